//! SVG plots of a summary: energy per policy, and servers per power state over time.

use std::path::Path;

use plotters::prelude::*;

use super::report::{PolicyRun, Summary};
use super::SimError;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Bar chart of total energy per policy.
pub fn energy_per_policy(summary: &Summary, path: &Path) -> Result<(), SimError> {
    let names: Vec<String> = summary.policies.iter().map(|p| p.policy.clone()).collect();
    let values: Vec<f64> = summary.policies.iter().map(|p| p.energy_kwh).collect();
    // A segmented 0..n axis has n + 1 slots; end at the last bar so no empty slot is drawn.
    let last_bar = names.len().saturating_sub(1).max(1);
    let max = values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.15;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Energy per policy ({} servers, {:.0} h)",
                summary.servers, summary.trace_hours
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last_bar).into_segmented(), 0f64..max)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("energy (kWh)")
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(BLUE.mix(0.6).filled())
                .margin(30)
                .data(values.iter().enumerate().map(|(i, v)| (i, *v))),
        )
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// Servers in S0 / Sz / S3 / transition over time for one policy.
pub fn states_over_time(run: &PolicyRun, servers: u32, path: &Path) -> Result<(), SimError> {
    let tl = &run.timeline;
    let hours: Vec<f64> = tl.t_s.iter().map(|t| t / 3600.0).collect();
    let end = hours.last().copied().unwrap_or(1.0).max(1e-9);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Server states over time: {}", run.policy),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..f64::from(servers.max(1)))
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("servers")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    let series: [(&str, &Vec<u32>, RGBColor); 4] = [
        ("S0", &tl.on, RED),
        ("Sz", &tl.sz, GREEN),
        ("S3", &tl.s3, BLUE),
        ("transition", &tl.transition, BLACK),
    ];
    for (label, counts, color) in series {
        let points: Vec<(f64, f64)> = hours
            .iter()
            .zip(counts.iter())
            .map(|(h, c)| (*h, f64::from(*c)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}
