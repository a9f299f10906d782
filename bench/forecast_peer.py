"""The forecast peer of bench/report.sh: statsforecast's AutoETS (weekly
season, model chosen by AICc) on the same daily series pos-etl report
forecast, holding out the same last days, scored with the same MASE
(scaled by the in-sample seasonal-naive error, period 7).

Usage: forecast_peer.py REPORT_DIR HORIZON
"""

import sys

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS

WEEK = 7


def mase(actual: np.ndarray, predicted: np.ndarray, train: np.ndarray) -> float:
    period = WEEK if len(train) > WEEK else 1
    scale = np.mean(np.abs(train[period:] - train[:-period]))
    return float(np.mean(np.abs(actual - predicted)) / scale) if scale > 0 else float("nan")


def main() -> None:
    report, horizon = sys.argv[1], int(sys.argv[2])
    history = pd.read_csv(f"{report}/forecast.csv", parse_dates=["day"])
    history = history[history["units_sold"].notna()]
    history["unique_id"] = history["series_kind"] + " " + history["series_id"].astype(str)
    accuracy = pd.read_csv(f"{report}/forecast_accuracy.csv")
    accuracy["unique_id"] = accuracy["series_kind"] + " " + accuracy["series_id"].astype(str)

    rows_to_end = history.groupby("unique_id").cumcount(ascending=False)
    train, test = history[rows_to_end >= horizon], history[rows_to_end < horizon]
    frame = train.rename(columns={"day": "ds", "units_sold": "y"})[["unique_id", "ds", "y"]]
    frame["y"] = frame["y"].astype(float)
    model = StatsForecast(models=[AutoETS(season_length=WEEK)], freq="D", n_jobs=1)
    predicted = model.forecast(df=frame, h=horizon)

    rows = []
    for uid, actual in test.groupby("unique_id"):
        fitted = train[train["unique_id"] == uid]["units_sold"].to_numpy(float)
        guess = predicted[predicted["unique_id"] == uid]["AutoETS"].clip(lower=0).to_numpy(float)
        ours = accuracy[accuracy["unique_id"] == uid].iloc[0]
        rows.append(
            {
                "series": uid,
                "pos_etl_model": ours["model"],
                "pos_etl_mase": ours["mase"],
                "seasonal_naive_mase": ours["seasonal_naive_mase"],
                "statsforecast_autoets_mase": mase(actual["units_sold"].to_numpy(float), guess, fitted),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    means = table[["pos_etl_mase", "seasonal_naive_mase", "statsforecast_autoets_mase"]].mean()
    print()
    print(f"mean MASE over {len(table)} series, last {horizon} days held out:")
    for name, value in means.items():
        print(f"  {name:28} {value:.3f}")


if __name__ == "__main__":
    main()
