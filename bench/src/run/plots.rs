//! The plots of RESULTS.md, as SVG: produce throughput over time for each broker, and latency
//! percentiles (produce at half the peak rate, request-reply round trips).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::Results;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const PERCENTILES: [(&str, &str); 5] = [
    ("p50", "p50_ms"),
    ("p90", "p90_ms"),
    ("p99", "p99_ms"),
    ("p99.9", "p999_ms"),
    ("max", "max_ms"),
];

pub fn draw(results: &Results, out: &Path) -> anyhow::Result<()> {
    throughput(results, &out.join("throughput.svg"))?;
    latency(
        results,
        "produce",
        "produce",
        "Produce latency at half the peak rate (ms, log scale)",
        &out.join("latency-produce.svg"),
    )?;
    // The produce-half workload's figures are under "produce-half".
    latency(
        results,
        "request-reply",
        "round_trip",
        "Request-reply round trip (ms, log scale)",
        &out.join("latency-request-reply.svg"),
    )
}

/// MB/s in each second of the peak produce run.
fn throughput(results: &Results, path: &Path) -> anyhow::Result<()> {
    let series: Vec<(String, Vec<f64>)> = results
        .systems
        .iter()
        .filter_map(|system| {
            let report = system.get("produce")?.report.as_ref()?;
            let size = report["parameters"]["size"].as_f64().unwrap_or(1024.0);
            let points = report["timeline"]
                .as_array()?
                .iter()
                .map(|count| count.as_f64().unwrap_or(0.0) * size / 1e6)
                .collect();
            Some((system.name.clone(), points))
        })
        .collect();
    let seconds = series
        .iter()
        .map(|(_, points)| points.len())
        .max()
        .unwrap_or(1);
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().copied())
        .fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    #[allow(clippy::cast_precision_loss)]
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Peak produce throughput over time (MB/s, 1 KiB messages)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..seconds as f64, 0.0..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("second of the measured window")
        .y_desc("MB/s")
        .draw()?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        #[allow(clippy::cast_precision_loss)]
        let line = points
            .iter()
            .enumerate()
            .map(|(second, value)| (second as f64 + 0.5, *value));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present().context("writing the throughput plot")
}

fn latency(
    results: &Results,
    workload: &str,
    kind: &str,
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let workload = if workload == "produce" {
        "produce-half"
    } else {
        workload
    };
    let series: Vec<(String, Vec<f64>)> = results
        .systems
        .iter()
        .filter_map(|system| {
            let outcome = system.get(workload)?;
            let values: Option<Vec<f64>> = PERCENTILES
                .iter()
                .map(|(_, field)| outcome.latency(kind, field))
                .collect();
            Some((system.name.clone(), values?))
        })
        .collect();
    let (low, high) = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold((f64::MAX, 0.0_f64), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    let (low, high) = if high > 0.0 {
        ((low / 2.0).max(0.001), high * 2.0)
    } else {
        (0.01, 10.0)
    };
    let root = SVGBackend::new(path, (900, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.25_f64..4.25_f64, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let index = x.round().max(0.0) as usize;
            PERCENTILES
                .get(index)
                .map_or(String::new(), |(label, _)| (*label).to_string())
        })
        .y_desc("ms")
        .draw()?;
    for (index, (name, values)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        #[allow(clippy::cast_precision_loss)]
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(at, value)| (at as f64, value.max(low)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|point| Circle::new(point, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present().context("writing a latency plot")
}
