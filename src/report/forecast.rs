//! Daily sales forecasts with prediction intervals, and their back-test.
//!
//! A series with at least two weeks of history is decomposed by MSTL into a
//! weekly season and a trend; the trend is forecast by AutoETS, which picks
//! the exponential-smoothing model (error, trend, damping) with the lowest
//! AICc, and the last week of the season is added back (augurs-mstl and
//! augurs-ets, ports of statsforecast). Shorter series get AutoETS alone, and
//! the model name says so. Forecasts of units are never negative.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use augurs_core::{Fit, Forecast, Predict};
use augurs_ets::AutoETS;
use augurs_ets::model::ModelType;
use augurs_mstl::{FittedTrendModel, MSTLModel, TrendModel};

/// Days in the seasonal period.
pub const WEEK: usize = 7;

/// Fewest days of history for the weekly-seasonal model: two full weeks.
pub const MIN_SEASONAL_DAYS: usize = 2 * WEEK;

/// Fewest days of history for any fitted model; below it the forecast
/// repeats the last value.
const MIN_FITTED_DAYS: usize = 4;

/// A forecast of `horizon` days with two prediction intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesForecast {
    /// The model that made it, e.g. `MSTL(7) + ETS(AAdN)`.
    pub model: String,
    /// Why a simpler model was used, if one was.
    pub note: Option<String>,
    /// The point forecast per day.
    pub point: Vec<f64>,
    /// The 80% interval per day: (lower, upper).
    pub interval_80: Vec<(f64, f64)>,
    /// The 95% interval per day: (lower, upper).
    pub interval_95: Vec<(f64, f64)>,
}

/// How well a model forecast the held-out end of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    /// Days the model was fitted on.
    pub train_days: usize,
    /// Days held out and forecast.
    pub holdout_days: usize,
    /// The model's forecast, made from the training days.
    pub model: SeriesForecast,
    /// Mean absolute scaled error of the model (null when the training days
    /// are constant, so the scale is zero).
    pub mase: Option<f64>,
    /// Symmetric mean absolute percentage error of the model, in percent.
    pub smape: f64,
    /// MASE of the seasonal-naive forecast (the last week, repeated).
    pub naive_mase: Option<f64>,
    /// sMAPE of the seasonal-naive forecast.
    pub naive_smape: f64,
}

/// Forecasts the `horizon` days after `history` (daily values, oldest first).
pub fn forecast(history: &[f64], horizon: usize) -> SeriesForecast {
    if history.len() >= MIN_SEASONAL_DAYS {
        match fit_seasonal(history, horizon) {
            Ok(forecast) => return forecast,
            Err(error) => return fit_non_seasonal(history, horizon, format!("the weekly model failed ({error})")),
        }
    }
    let note = format!(
        "{} days of history: weekly seasonality needs {MIN_SEASONAL_DAYS}",
        history.len()
    );
    fit_non_seasonal(history, horizon, note)
}

/// Holds out the last `horizon` days of `series`, forecasts them from the
/// rest, and scores the model and the seasonal-naive baseline. `None` when
/// the series is too short to leave any history.
pub fn backtest(series: &[f64], horizon: usize) -> Option<Accuracy> {
    let train_days = series.len().checked_sub(horizon).filter(|&n| n >= 2)?;
    let (train, actual) = series.split_at(train_days);
    let model = forecast(train, horizon);
    let naive = seasonal_naive(train, horizon);
    let scale = mase_scale(train);
    Some(Accuracy {
        train_days,
        holdout_days: horizon,
        mase: scale.map(|scale| mean_absolute_error(actual, &model.point) / scale),
        smape: smape(actual, &model.point),
        naive_mase: scale.map(|scale| mean_absolute_error(actual, &naive) / scale),
        naive_smape: smape(actual, &naive),
        model,
    })
}

/// The last week of `history` repeated over `horizon` days (the last value,
/// with less than a week).
pub fn seasonal_naive(history: &[f64], horizon: usize) -> Vec<f64> {
    let period = if history.len() >= WEEK { WEEK } else { 1 };
    let last_period = &history[history.len().saturating_sub(period)..];
    (0..horizon).map(|step| last_period.get(step % period).copied().unwrap_or(0.0)).collect()
}

/// The mean absolute error of the seasonal-naive forecast within `train`,
/// the denominator of MASE; `None` when it is zero.
fn mase_scale(train: &[f64]) -> Option<f64> {
    let period = if train.len() > WEEK { WEEK } else { 1 };
    let errors: Vec<f64> = train.windows(period + 1).map(|w| (w[period] - w[0]).abs()).collect();
    let scale = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    (scale > 0.0).then_some(scale)
}

fn mean_absolute_error(actual: &[f64], predicted: &[f64]) -> f64 {
    let total: f64 = actual.iter().zip(predicted).map(|(a, p)| (a - p).abs()).sum();
    total / actual.len().max(1) as f64
}

/// sMAPE in percent; a day where both are zero counts as no error.
fn smape(actual: &[f64], predicted: &[f64]) -> f64 {
    let total: f64 = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| {
            let denominator = a.abs() + p.abs();
            if denominator == 0.0 { 0.0 } else { 2.0 * (a - p).abs() / denominator }
        })
        .sum();
    100.0 * total / actual.len().max(1) as f64
}

/// AutoETS on the series with its weekly season taken out by MSTL.
fn fit_seasonal(history: &[f64], horizon: usize) -> Result<SeriesForecast, String> {
    let trend = ChosenTrend::default();
    let fitted = MSTLModel::new(vec![WEEK], trend.clone()).fit(history).map_err(|e| e.to_string())?;
    let predict = |level| fitted.predict(horizon, level).map_err(|e| e.to_string());
    let chosen = trend.chosen.lock().expect("not poisoned").map_or_else(|| "ETS".to_string(), |t| format!("ETS({t})"));
    Ok(with_intervals(format!("MSTL({WEEK}) + {chosen}"), None, predict(0.8)?, predict(0.95)?))
}

/// AutoETS with no season; below [`MIN_FITTED_DAYS`], the last value.
fn fit_non_seasonal(history: &[f64], horizon: usize, note: String) -> SeriesForecast {
    if history.len() >= MIN_FITTED_DAYS {
        let fitted = non_seasonal_ets().fit(history);
        if let Ok(fitted) = fitted {
            let name = format!("ETS({})", fitted.model().model_type());
            let predict = |level| fitted.predict(horizon, level);
            if let (Ok(p80), Ok(p95)) = (predict(0.8), predict(0.95)) {
                return with_intervals(name, Some(note), p80, p95);
            }
        }
    }
    let last = history.last().copied().unwrap_or(0.0);
    let flat = vec![(last, last); horizon];
    SeriesForecast {
        model: "naive".to_string(),
        note: Some(format!("{note}; too short for a fitted model, the last value is repeated")),
        point: vec![last; horizon],
        interval_80: flat.clone(),
        interval_95: flat,
    }
}

/// The AutoETS search for a non-seasonal series: additive errors (units can
/// be zero, which multiplicative errors cannot fit), any trend, damped or not.
fn non_seasonal_ets() -> AutoETS {
    AutoETS::new(1, "AZN").expect("AZN is a valid AutoETS specification")
}

fn with_intervals(model: String, note: Option<String>, p80: Forecast, p95: Forecast) -> SeriesForecast {
    let clamp = |value: f64| value.max(0.0);
    let bounds = |forecast: &Forecast| -> Vec<(f64, f64)> {
        match &forecast.intervals {
            Some(intervals) => {
                intervals.lower.iter().zip(&intervals.upper).map(|(l, u)| (clamp(*l), clamp(*u))).collect()
            }
            None => forecast.point.iter().map(|p| (clamp(*p), clamp(*p))).collect(),
        }
    };
    SeriesForecast {
        model,
        note,
        interval_80: bounds(&p80),
        interval_95: bounds(&p95),
        point: p80.point.iter().copied().map(clamp).collect(),
    }
}

/// The MSTL trend model: AutoETS, remembering which model it chose so the
/// output can name it.
#[derive(Debug, Clone, Default)]
struct ChosenTrend {
    chosen: Arc<Mutex<Option<ModelType>>>,
}

impl TrendModel for ChosenTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("AutoETS")
    }

    fn fit(
        &self,
        y: &[f64],
    ) -> Result<Box<dyn FittedTrendModel + Sync + Send>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let fitted = non_seasonal_ets().fit(y)?;
        *self.chosen.lock().expect("not poisoned") = Some(fitted.model().model_type());
        Ok(Box::new(FittedTrend(fitted)))
    }
}

#[derive(Debug)]
struct FittedTrend(augurs_ets::FittedAutoETS);

impl FittedTrendModel for FittedTrend {
    fn predict_inplace(
        &self,
        horizon: usize,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.0.predict_inplace(horizon, level, forecast)?)
    }

    fn predict_in_sample_inplace(
        &self,
        level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.0.predict_in_sample_inplace(level, forecast)?)
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.0.training_data_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight weeks of a weekly pattern (busy weekends) on a slow upward
    /// trend, with deterministic noise.
    fn weekly_series(days: usize) -> Vec<f64> {
        let pattern = [20.0, 18.0, 19.0, 22.0, 30.0, 45.0, 40.0];
        let mut state: u64 = 7;
        (0..days)
            .map(|day| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 8.0;
                pattern[day % WEEK] + day as f64 * 0.1 + noise
            })
            .collect()
    }

    #[test]
    fn the_weekly_model_beats_seasonal_naive_on_a_weekly_series() {
        let accuracy = backtest(&weekly_series(70), 14).expect("long enough");
        assert!(accuracy.model.model.starts_with("MSTL(7) + ETS("), "{}", accuracy.model.model);
        assert_eq!(accuracy.model.note, None);
        let (mase, naive) = (accuracy.mase.unwrap(), accuracy.naive_mase.unwrap());
        assert!(mase < naive, "model MASE {mase} should beat seasonal naive {naive}");
        assert!(accuracy.smape < accuracy.naive_smape);
        // the season is kept: the weekend peak is forecast above the midweek dip
        let point = &accuracy.model.point;
        assert!(point[5] > point[1] + 10.0, "{point:?}");
    }

    #[test]
    fn intervals_widen_with_the_horizon_and_nest() {
        let forecast = forecast(&weekly_series(56), 14);
        let width = |(low, high): (f64, f64)| high - low;
        assert!(width(forecast.interval_95[13]) > width(forecast.interval_95[0]));
        assert!(width(forecast.interval_80[13]) > width(forecast.interval_80[0]));
        for day in 0..14 {
            let (l80, u80) = forecast.interval_80[day];
            let (l95, u95) = forecast.interval_95[day];
            assert!(l95 <= l80 && l80 <= forecast.point[day] && forecast.point[day] <= u80 && u80 <= u95);
        }
    }

    #[test]
    fn a_short_series_falls_back_to_a_non_seasonal_model_and_says_so() {
        let short = forecast(&weekly_series(10), 14);
        assert!(short.model.starts_with("ETS("), "{}", short.model);
        assert_eq!(short.note.as_deref(), Some("10 days of history: weekly seasonality needs 14"));
        assert_eq!(short.point.len(), 14);

        let tiny = forecast(&[3.0, 5.0], 3);
        assert_eq!(tiny.model, "naive");
        assert_eq!(tiny.point, vec![5.0; 3]);
    }

    #[test]
    fn forecasts_of_units_are_never_negative() {
        let falling: Vec<f64> = (0..28).map(|day| (28 - day) as f64).collect();
        let forecast = forecast(&falling, 28);
        assert!(forecast.point.iter().all(|&p| p >= 0.0));
        assert!(forecast.interval_95.iter().all(|&(low, _)| low >= 0.0));
    }

    #[test]
    fn scores_are_computed_by_hand() {
        // training [1,2,...,9]: seasonal-naive errors within it are all 7
        // (lag 7: 8-1, 9-2), so the MASE scale is 7
        assert_eq!(mase_scale(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]), Some(7.0));
        assert_eq!(mase_scale(&[4.0; 10]), None);
        assert_eq!(seasonal_naive(&[9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 8), vec![
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1.0
        ]);
        assert_eq!(smape(&[0.0, 10.0], &[0.0, 30.0]), 50.0);
    }
}
