//! `report.html`: one self-contained page (inline CSS and SVG drawn here; no
//! script, font or image from anywhere) that opens from a file and prints.
//! Every data mark of a chart carries `class="mark"` inside a figure with
//! the chart's id, so a test can count what a browser rendered.

use std::fmt::Write;

use super::{Report, ReportTable};

const PALETTE: [&str; 8] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Days of history drawn before each forecast.
const FORECAST_CONTEXT_DAYS: usize = 56;

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let days = report.table("sales_by_store").texts("day");
    let period = match (days.iter().flatten().min(), days.iter().flatten().max()) {
        (Some(first), Some(last)) => format!("{first} to {last}"),
        _ => "no events".to_string(),
    };
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pos-etl report · {period}</title>
<style>{STYLE}</style>
</head>
<body>
<header><h1>Inventory report</h1><p>{period} · made by pos-etl {version}</p></header>
"#,
        period = escape(&period),
        version = env!("CARGO_PKG_VERSION"),
    );
    page += &top_items(report.table("top_items"));
    page += &sales_by_store(report.table("sales_by_store"));
    page += &forecasts(report.table("forecast"), report.table("forecast_accuracy"), report.mean_mase);
    page += &low_stock(report.table("low_stock"));
    page += &seasonality(report.table("seasonality"));
    page += &clusters(report.table("cluster_profiles"), report.silhouette);
    page += "</body>\n</html>\n";
    page
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;max-width:1100px;margin:0 auto;padding:0 16px 32px}
h1{font-size:24px;margin:20px 0 0}h2{font-size:18px;margin:28px 0 4px;border-bottom:1px solid #ddd}
header p,.note{color:#666;margin:2px 0 8px}
figure{margin:8px 0}figcaption{font-weight:600;margin-bottom:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px 16px}
svg{display:block;max-width:100%;height:auto}svg text{font-size:11px;fill:#555}
.axis{stroke:#bbb;stroke-width:1}.line{fill:none;stroke-width:1.6}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.below{color:#c0392b;font-weight:600}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
@page{size:A4;margin:12mm}
@media print{body{max-width:none;font-size:11px}section,figure,tr{break-inside:avoid}h2{break-after:avoid}}
";

fn section(id: &str, title: &str, body: &str) -> String {
    format!("<section id=\"{id}\">\n<h2>{}</h2>\n{body}</section>\n", escape(title))
}

fn figure(id: &str, caption: Option<&str>, body: &str) -> String {
    let caption = caption.map(|c| format!("<figcaption>{}</figcaption>", escape(c))).unwrap_or_default();
    format!("<figure id=\"{id}\">{caption}{body}</figure>\n")
}

fn top_items(table: &ReportTable) -> String {
    let names = table.texts("item_name");
    let ids = table.ids("item_id");
    let ranks = table.numbers("rank");
    let units = table.numbers("units_sold");
    let shares = table.numbers("share_of_units");
    if table.rows() == 0 {
        return section("top-items", "Top items by units sold", "<p class=\"note\">No sales.</p>\n");
    }
    let max = units.iter().flatten().copied().fold(0.0, f64::max).max(1.0);
    let (label_width, bar_width, row) = (220.0, 560.0, 20.0);
    let height = row * table.rows() as f64 + 4.0;
    let mut svg = format!(r#"<svg viewBox="0 0 {} {height}" role="img" aria-label="units sold per item">"#, label_width + bar_width + 120.0);
    for i in 0..table.rows() {
        let y = i as f64 * row + 2.0;
        let value = units[i].unwrap_or(0.0);
        let label = item_label(ids[i], names[i].as_deref());
        let width = bar_width * value / max;
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">#{rank} {label}</text><rect class="mark" x="{label_width}" y="{y}" width="{width:.1}" height="{h}" fill="{color}"><title>{label}: {value} units</title></rect><text x="{vx:.1}" y="{ty}">{value} ({share:.1}%)</text>"#,
            lx = label_width - 6.0,
            ty = y + row * 0.7,
            rank = ranks[i].unwrap_or(0.0),
            label = escape(&label),
            h = row - 4.0,
            color = PALETTE[0],
            vx = label_width + width + 4.0,
            share = shares[i].unwrap_or(0.0) * 100.0,
        );
    }
    svg += "</svg>";
    section("top-items", "Top items by units sold (sales and BOPIS)", &figure("chart-top-items", None, &svg))
}

fn sales_by_store(table: &ReportTable) -> String {
    let stores = table.texts("store_name");
    let ids = table.ids("store_id");
    let days = table.texts("day");
    let units = table.numbers("units_sold");
    let mut lines: Vec<Line> = Vec::new();
    for i in 0..table.rows() {
        // One line per store id: two stores without a name are two lines.
        if i == 0 || ids[i] != ids[i - 1] {
            let label = store_label(ids[i], stores[i].as_deref());
            lines.push(Line { label, points: Vec::new(), color: PALETTE[lines.len() % PALETTE.len()] });
        }
        let line = lines.last_mut().expect("just pushed");
        line.points.push((line.points.len() as f64, units[i].unwrap_or(0.0)));
    }
    let labels: Vec<String> = days.iter().flatten().take(lines.first().map_or(0, |l| l.points.len())).cloned().collect();
    let chart = LineChart { width: 1000.0, height: 260.0, lines: &lines, bands: &[], x_labels: &labels };
    let body = legend(&lines) + &figure("chart-sales-by-store", None, &chart.svg());
    section("sales-by-store", "Units sold per store per day", &body)
}

fn forecasts(forecast: &ReportTable, accuracy: &ReportTable, mean_mase: Option<(f64, f64)>) -> String {
    let kinds = forecast.texts("series_kind");
    let ids = forecast.ids("series_id");
    let names = forecast.texts("series_name");
    let days = forecast.texts("day");
    let actual = forecast.numbers("units_sold");
    let point = forecast.numbers("forecast");
    let bounds = ["lower_80", "upper_80", "lower_95", "upper_95"].map(|c| forecast.numbers(c));
    let forecast_models = forecast.texts("model");
    let mases = accuracy.numbers("mase");
    let naive = accuracy.numbers("seasonal_naive_mase");

    let mut figures = String::new();
    let mut start = 0;
    let mut index = 0;
    while start < forecast.rows() {
        let key = (&kinds[start], ids[start]);
        let end = (start..forecast.rows()).find(|&i| (&kinds[i], ids[i]) != key).unwrap_or(forecast.rows());
        let history_end = (start..end).find(|&i| actual[i].is_none()).unwrap_or(end);
        let from = history_end.saturating_sub(FORECAST_CONTEXT_DAYS).max(start);
        let x = |i: usize| (i - from) as f64;
        let history = Line {
            label: "units sold".into(),
            points: (from..history_end).map(|i| (x(i), actual[i].unwrap_or(0.0))).collect(),
            color: "#444",
        };
        // The forecast line starts at the last actual day, so the two join.
        let mut future: Vec<(f64, f64)> = history.points.last().copied().into_iter().collect();
        future.extend((history_end..end).map(|i| (x(i), point[i].unwrap_or(0.0))));
        let band = |lower: usize, upper: usize, opacity: f64| Band {
            upper: (history_end..end).map(|i| (x(i), bounds[upper][i].unwrap_or(0.0))).collect(),
            lower: (history_end..end).map(|i| (x(i), bounds[lower][i].unwrap_or(0.0))).collect(),
            color: PALETTE[1],
            opacity,
        };
        let lines = [history, Line { label: "forecast".into(), points: future, color: PALETTE[1] }];
        let labels: Vec<String> = (from..end).map(|i| days[i].clone().unwrap_or_default()).collect();
        let chart = LineChart { width: 520.0, height: 200.0, lines: &lines, bands: &[band(2, 3, 0.18), band(0, 1, 0.32)], x_labels: &labels };
        let kind = kinds[start].as_deref().unwrap_or("series");
        let title = match kind {
            "item" => item_label(ids[start], names[start].as_deref()),
            _ => store_label(ids[start], names[start].as_deref()),
        };
        let score = match (mases.get(index).copied().flatten(), naive.get(index).copied().flatten()) {
            (Some(m), Some(n)) => format!(" · back-test MASE {m:.2} (seasonal naive {n:.2})"),
            _ => String::new(),
        };
        let model = forecast_models.get(history_end).cloned().flatten().unwrap_or_default();
        let caption = format!("{kind}: {title} — {model}{score}");
        figures += &figure(&format!("chart-forecast-{index}"), Some(&caption), &chart.svg());
        start = end;
        index += 1;
    }
    let summary = match mean_mase {
        Some((model, naive)) => format!(
            "<p class=\"note\">Shaded: 80% and 95% prediction intervals. Mean back-test MASE {model:.2}, seasonal naive {naive:.2} (below 1 beats repeating last week's sales in-sample).</p>\n"
        ),
        None => "<p class=\"note\">Shaded: 80% and 95% prediction intervals.</p>\n".to_string(),
    };
    section("forecast", "Forecast of units sold", &(summary + "<div class=\"grid\">\n" + &figures + "</div>\n"))
}

fn low_stock(table: &ReportTable) -> String {
    let ranks = table.numbers("rank");
    let stores = table.texts("store_name");
    let store_ids = table.ids("store_id");
    let ids = table.ids("item_id");
    let names = table.texts("item_name");
    let current = table.numbers("current_inventory");
    let safety = table.numbers("safety_stock_quantity");
    let below = table.texts("below_safety_stock");
    let stock = table.numbers("end_of_day_stock");
    let sold = table.numbers("units_sold");
    let mut rows = String::new();
    let mut start = 0;
    while start < table.rows() {
        let end = (start..table.rows()).find(|&i| ranks[i] != ranks[start]).unwrap_or(table.rows());
        let spark = |values: &[Option<f64>], color: &str| sparkline(&values[start..end], color);
        let class = if below[start].as_deref() == Some("true") { " class=\"below\"" } else { "" };
        let _ = write!(
            rows,
            "<tr><td class=\"n\">{rank}</td><td>{store}</td><td>{item}</td><td class=\"n\"{class}>{current}</td><td class=\"n\">{safety}</td><td>{stock_line}</td><td>{sold_line}</td></tr>\n",
            rank = ranks[start].unwrap_or(0.0),
            store = escape(&store_label(store_ids[start], stores[start].as_deref())),
            item = escape(&item_label(ids[start], names[start].as_deref())),
            current = number(current[start]),
            safety = number(safety[start]),
            stock_line = spark(&stock, PALETTE[0]),
            sold_line = spark(&sold, PALETTE[1]),
        );
        start = end;
    }
    let body = format!(
        "<figure id=\"chart-low-stock\"><table>\n<thead><tr><th>#</th><th>store</th><th>item</th><th>stock now</th><th>safety stock</th><th>end-of-day stock, last {days} days</th><th>units sold per day</th></tr></thead>\n<tbody>\n{rows}</tbody></table></figure>\n",
        days = super::HISTORY_DAYS
    );
    section("low-stock", "Lowest stock now", &body)
}

fn seasonality(table: &ReportTable) -> String {
    let stores = table.texts("store_name");
    let store_ids = table.ids("store_id");
    let days = table.numbers("day_of_week");
    let hours = table.numbers("hour_of_day");
    let index = table.numbers("index");
    let units = table.numbers("units_sold");
    let (cell_w, cell_h, left, top) = (34.0, 22.0, 40.0, 16.0);
    let mut figures = String::new();
    let mut start = 0;
    let mut store_number = 0;
    while start < table.rows() {
        // One heatmap per store id, on a scale of its own: a store with a
        // handful of sales at one hour must not pale every other store.
        let end = (start..table.rows()).find(|&i| store_ids[i] != store_ids[start]).unwrap_or(table.rows());
        let max = index[start..end].iter().flatten().copied().fold(0.0, f64::max).max(1e-9);
        let mut svg = format!(r#"<svg viewBox="0 0 {} {}" role="img" aria-label="units by weekday and hour">"#, left + 24.0 * cell_w, top + 7.0 * cell_h);
        for hour in (0..24).step_by(3) {
            let _ = write!(svg, r#"<text x="{:.1}" y="11">{hour:02}h</text>"#, left + hour as f64 * cell_w + 2.0);
        }
        for (d, name) in DAY_NAMES.iter().enumerate() {
            let _ = write!(svg, r#"<text x="0" y="{:.1}">{name}</text>"#, top + d as f64 * cell_h + 15.0);
        }
        for i in start..end {
            let (Some(day), Some(hour)) = (days[i], hours[i]) else { continue };
            let value = index[i].unwrap_or(0.0);
            let _ = write!(
                svg,
                r#"<rect class="mark" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"><title>{day_name} {hour:02}:00 — index {value:.2}, {units} units</title></rect>"#,
                x = left + hour * cell_w,
                y = top + (day - 1.0) * cell_h,
                w = cell_w - 1.0,
                h = cell_h - 1.0,
                fill = heat(value / max),
                day_name = DAY_NAMES.get(day as usize - 1).unwrap_or(&"?"),
                units = units[i].unwrap_or(0.0),
            );
        }
        svg += "</svg>";
        let name = store_label(store_ids[start], stores[start].as_deref());
        figures += &figure(&format!("chart-seasonality-{store_number}"), Some(&name), &svg);
        start = end;
        store_number += 1;
    }
    let note = "<p class=\"note\">Index: units sold in the hour, per occurrence of its weekday, over the store's average hour (darker is busier, on each store's own scale).</p>\n";
    section("seasonality", "When each store sells", &(note.to_string() + &figures))
}

fn clusters(table: &ReportTable, silhouette: Option<f64>) -> String {
    let clusters = table.numbers("cluster");
    let sizes = table.numbers("items");
    let speeds = table.numbers("units_per_day");
    let profiles = table.texts("profile");
    let shares = table.numbers("share");
    let mut weekly = Vec::new();
    let mut daily = Vec::new();
    let mut legend_lines = Vec::new();
    for i in 0..table.rows() {
        let cluster = clusters[i].unwrap_or(0.0) as usize;
        let color = PALETTE[(cluster.max(1) - 1) % PALETTE.len()];
        let target = if profiles[i].as_deref() == Some("day_of_week") { &mut weekly } else { &mut daily };
        if target.last().is_none_or(|l: &Line| l.color != color) {
            let label = format!(
                "cluster {cluster}: {} items, {:.1} units/day",
                sizes[i].unwrap_or(0.0),
                speeds[i].unwrap_or(0.0)
            );
            if profiles[i].as_deref() == Some("day_of_week") {
                legend_lines.push(Line { label: label.clone(), points: Vec::new(), color });
            }
            target.push(Line { label, points: Vec::new(), color });
        }
        let line = target.last_mut().expect("just pushed");
        line.points.push((line.points.len() as f64, shares[i].unwrap_or(0.0) * 100.0));
    }
    if weekly.is_empty() {
        return section("clusters", "Items grouped by how they sell", "<p class=\"note\">Too few items sold to group them.</p>\n");
    }
    let day_labels: Vec<String> = DAY_NAMES.iter().map(|d| d.to_string()).collect();
    let hour_labels: Vec<String> = (0..24).map(|h| format!("{h:02}h")).collect();
    let week = LineChart { width: 420.0, height: 200.0, lines: &weekly, bands: &[], x_labels: &day_labels };
    let day = LineChart { width: 520.0, height: 200.0, lines: &daily, bands: &[], x_labels: &hour_labels };
    let note = format!(
        "<p class=\"note\">k-means on each item's share of units per weekday and hour and its velocity; k chosen by silhouette ({}). Lines: the clusters' mean share of units, in %.</p>\n",
        silhouette.map_or("n/a".to_string(), |s| format!("{s:.2}"))
    );
    let body = note
        + &legend(&legend_lines)
        + "<div class=\"grid\">\n"
        + &figure("chart-clusters-week", Some("share of units by weekday"), &week.svg())
        + &figure("chart-clusters-day", Some("share of units by hour"), &day.svg())
        + "</div>\n";
    section("clusters", "Items grouped by how they sell", &body)
}

/// One line of a chart: (x, y) points, x in steps of 1.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: &'static str,
}

/// A shaded band between two lines sharing their x.
struct Band {
    upper: Vec<(f64, f64)>,
    lower: Vec<(f64, f64)>,
    color: &'static str,
    opacity: f64,
}

/// A line chart with a zero-based y axis and one x label per step.
struct LineChart<'a> {
    width: f64,
    height: f64,
    lines: &'a [Line],
    bands: &'a [Band],
    x_labels: &'a [String],
}

impl LineChart<'_> {
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 20.0;
    const TOP: f64 = 8.0;
    const RIGHT: f64 = 16.0;

    fn svg(&self) -> String {
        let all_y = self.lines.iter().flat_map(|l| &l.points).chain(self.bands.iter().flat_map(|b| &b.upper)).map(|p| p.1);
        let y_max = nice_ceiling(all_y.fold(0.0, f64::max));
        let x_max = (self.x_labels.len().max(2) - 1) as f64;
        let plot_w = self.width - Self::LEFT - Self::RIGHT;
        let plot_h = self.height - Self::TOP - Self::BOTTOM;
        let sx = |x: f64| Self::LEFT + plot_w * x / x_max;
        let sy = |y: f64| Self::TOP + plot_h * (1.0 - y / y_max);
        let path = |points: &mut dyn Iterator<Item = &(f64, f64)>| {
            points
                .enumerate()
                .map(|(i, (x, y))| format!("{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, sx(*x), sy(*y)))
                .collect::<String>()
        };
        let mut svg = format!(r#"<svg viewBox="0 0 {} {}" role="img">"#, self.width, self.height);
        for tick in 0..=4 {
            let value = y_max * tick as f64 / 4.0;
            let y = sy(value);
            let _ = write!(
                svg,
                r#"<line class="axis" x1="{l}" x2="{r:.1}" y1="{y:.1}" y2="{y:.1}" stroke-opacity="{o}"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                l = Self::LEFT,
                r = self.width - Self::RIGHT,
                o = if tick == 0 { 1.0 } else { 0.35 },
                tx = Self::LEFT - 4.0,
                ty = y + 4.0,
                label = short_number(value),
            );
        }
        let label_every = (self.x_labels.len() / 6).max(1);
        for (i, label) in self.x_labels.iter().enumerate().step_by(label_every) {
            let _ = write!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, sx(i as f64), self.height - 5.0, escape(label));
        }
        for band in self.bands {
            let outline = path(&mut band.upper.iter().chain(band.lower.iter().rev()));
            let _ = write!(svg, r#"<path class="mark" d="{outline}Z" fill="{}" fill-opacity="{}"/>"#, band.color, band.opacity);
        }
        for line in self.lines {
            let _ = write!(
                svg,
                r#"<path class="mark line" d="{}" stroke="{}"><title>{}</title></path>"#,
                path(&mut line.points.iter()),
                line.color,
                escape(&line.label)
            );
        }
        svg += "</svg>";
        svg
    }
}

fn legend(lines: &[Line]) -> String {
    let entries: String = lines
        .iter()
        .map(|l| format!("<span><i style=\"background:{}\"></i>{}</span>", l.color, escape(&l.label)))
        .collect();
    format!("<p class=\"legend\">{entries}</p>\n")
}

/// A 120×24 line of `values` (nulls skipped), for a table cell.
fn sparkline(values: &[Option<f64>], color: &str) -> String {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    let (low, high) = known.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
    let span = (high - low).max(1.0);
    let step = 120.0 / (values.len().max(2) - 1) as f64;
    let d: String = known
        .iter()
        .enumerate()
        .map(|(n, (i, v))| format!("{}{:.1},{:.1}", if n == 0 { "M" } else { "L" }, *i as f64 * step, 22.0 - 20.0 * (v - low) / span))
        .collect();
    let range = if known.is_empty() { String::new() } else { format!("{} to {}", short_number(low), short_number(high)) };
    format!(
        r#"<svg width="120" height="24" viewBox="0 0 120 24"><path class="mark line" d="{d}" stroke="{color}"><title>{range}</title></path></svg>"#
    )
}

/// White to dark blue, for `t` in 0..=1.
fn heat(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let channel = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", channel(247.0, 8.0), channel(251.0, 48.0), channel(255.0, 107.0))
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&v| v >= value).unwrap_or(10.0 * magnitude)
}

fn short_number(value: f64) -> String {
    match value.abs() {
        v if v >= 1e6 => format!("{:.1}M", value / 1e6),
        v if v >= 1e4 => format!("{:.0}k", value / 1e3),
        v if v >= 100.0 || value.fract() == 0.0 => format!("{value:.0}"),
        _ => format!("{value:.1}"),
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v}"))
}

fn item_label(id: Option<i64>, name: Option<&str>) -> String {
    label("item", id, name)
}

fn store_label(id: Option<i64>, name: Option<&str>) -> String {
    label("store", id, name)
}

/// A store's or an item's name, or, where its id has no lookup row, the id
/// and a note saying so.
fn label(kind: &str, id: Option<i64>, name: Option<&str>) -> String {
    match (name, id) {
        (Some(name), _) => name.to_string(),
        (None, Some(id)) => format!("{kind} {id} (no lookup row)"),
        (None, None) => format!("unknown {kind}"),
    }
}

/// `text` safe inside HTML and SVG text and attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_scales_are_round() {
        assert_eq!(escape(r#"<b>"Tom & Jerry's"</b>"#), "&lt;b&gt;&quot;Tom &amp; Jerry&#39;s&quot;&lt;/b&gt;");
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(480.0), 500.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
        assert_eq!(heat(0.0), "#f7fbff");
        assert_eq!(heat(1.0), "#08306b");
    }
}
