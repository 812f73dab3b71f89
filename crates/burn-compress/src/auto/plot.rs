//! The SVG of a search: the metric against MACs for every candidate, the dense model, the
//! chosen model and the uniform baseline marked.

use super::{AutoError, AutoReport};

/// Plot size in SVG user units.
const PLOT_SIZE: (u32, u32) = (900, 560);

/// DejaVu Sans, subset to ASCII (10 KB; licence in `assets/LICENSE-DejaVu.txt`): plotters lays
/// out SVG text with its metrics.
static FONT: &[u8] = include_bytes!("../../assets/dejavu-sans-ascii.ttf");

/// The search of `report` as SVG text: one point per candidate (search candidates in blue,
/// uniform-bisection probes in grey) at (MACs, metric), the dense model, the chosen model
/// (after its final fine-tune: a red star) and the uniform baseline (a black square), with the
/// budget's MACs as a dashed line when the budget counts MACs.
///
/// # Errors
/// [`AutoError::Plot`] when plotters fails.
pub fn plot_svg(report: &AutoReport, title: &str) -> Result<String, AutoError> {
    use plotters::prelude::*;
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // A constant font: registering cannot fail at run time but for a bad asset, which the
        // plot test catches.
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
    let fail = |e: &dyn std::fmt::Display| AutoError::Plot(e.to_string());
    let mut points: Vec<(f64, f64)> = report
        .candidates
        .iter()
        .map(|c| (c.macs as f64, c.metric))
        .collect();
    points.push((report.dense.macs as f64, report.dense.metric));
    points.push((report.chosen.macs as f64, report.chosen.metric));
    if let Some(u) = &report.uniform {
        points.push((u.macs as f64, u.metric));
    }
    let finite = points.iter().filter(|p| p.1.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(0.005);
    let x_max = report.dense.macs.max(1) as f64 * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("MACs per sample (after speedup)")
            .y_desc(report.metric.to_string())
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .x_label_formatter(&|x| format!("{:.0}k", x / 1e3))
            .draw()
            .map_err(|e| fail(&e))?;
        if report.measure == compress_core::search::Measure::Macs {
            let x = report.fraction * report.dense.macs as f64;
            let grey = RGBColor(150, 150, 150);
            chart
                .draw_series(DashedLineSeries::new(
                    [(x, lo - pad), (x, hi + pad)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| fail(&e))?
                .label(format!("budget ({:.2}x fewer MACs)", 1.0 / report.fraction))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(1))
                });
        }
        let blue = RGBColor(40, 100, 200);
        let grey = RGBColor(170, 170, 170);
        for (phase, color, label) in [
            ("uniform", grey, "uniform probes (no fine-tune)"),
            ("search", blue, "search candidates"),
        ] {
            let pts: Vec<(f64, f64)> = report
                .candidates
                .iter()
                .filter(|c| c.phase == phase && c.metric.is_finite())
                .map(|c| (c.macs as f64, c.metric))
                .collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    pts.iter()
                        .map(|&p| Circle::new(p, 3, color.mix(0.7).filled())),
                )
                .map_err(|e| fail(&e))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        let dense = (report.dense.macs as f64, report.dense.metric);
        chart
            .draw_series([TriangleMarker::new(dense, 7, BLACK.filled())])
            .map_err(|e| fail(&e))?
            .label("dense")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, BLACK.filled()));
        let chosen = (report.chosen.macs as f64, report.chosen.metric);
        chart
            .draw_series([Cross::new(chosen, 8, RED.stroke_width(3))])
            .map_err(|e| fail(&e))?
            .label(format!(
                "chosen, fine-tuned ({:.2}x fewer MACs)",
                report.chosen.macs_times_fewer
            ))
            .legend(|(x, y)| Cross::new((x + 10, y), 6, RED.stroke_width(3)));
        if let Some(u) = &report.uniform {
            let p = (u.macs as f64, u.metric);
            chart
                .draw_series([
                    EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], BLACK.filled())
                ])
                .map_err(|e| fail(&e))?
                .label(format!(
                    "uniform, fine-tuned ({:.2}x fewer MACs)",
                    u.macs_times_fewer
                ))
                .legend(|(x, y)| Rectangle::new([(x + 5, y - 5), (x + 15, y + 5)], BLACK.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}
