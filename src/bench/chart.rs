//! The run as an SVG chart (plotters, SVG backend only): throughput
//! against batch size, throughput against concurrency (both with the
//! broker and database ceilings), and the latency percentiles.

use plotters::prelude::*;

use super::report::{BenchReport, TARGET_P99_MS};

const WORKER: RGBColor = RGBColor(31, 119, 180);
const BROKER: RGBColor = RGBColor(214, 39, 40);
const DATABASE: RGBColor = RGBColor(44, 160, 44);
const OFFERED: RGBColor = RGBColor(255, 127, 14);

/// The chart of `report`, as SVG text.
pub fn svg(report: &BenchReport) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (1260, 440)).into_drawing_area();
        draw(&root, report).map_err(|err| err.to_string())?;
        root.present().map_err(|err| err.to_string())?;
    }
    Ok(text)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw(root: &Area<'_>, report: &BenchReport) -> Result<(), Box<dyn std::error::Error + 'static>> {
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(36);
    title.titled(
        &format!(
            "ipn-reconciler bench: {} notifications, ratio {:.2}, speedup {:.2}",
            report.notifications, report.ratio, report.speedup
        ),
        ("sans-serif", 18),
    )?;
    let panels = body.split_evenly((1, 3));
    let tuning = &report.tuning;
    let by_batch: Vec<(f64, f64)> = points(report, |p| {
        (p.concurrency == tuning.concurrency).then_some(p.batch_size as f64)
    });
    let by_concurrency: Vec<(f64, f64)> = points(report, |p| {
        (p.batch_size == tuning.batch_size).then_some(p.concurrency as f64)
    });
    throughput(
        &panels[0],
        &format!("rate by batch size (concurrency {})", tuning.concurrency),
        "batch size",
        &by_batch,
        report,
    )?;
    throughput(
        &panels[1],
        &format!("rate by concurrency (batch size {})", tuning.batch_size),
        "concurrency (batches at once)",
        &by_concurrency,
        report,
    )?;
    latency(&panels[2], report)?;
    Ok(())
}

/// The sweep's points with an x chosen by `x`, sorted.
fn points(
    report: &BenchReport,
    x: impl Fn(&super::report::SweepPoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = report
        .sweep
        .iter()
        .filter_map(|p| x(p).map(|x| (x, p.per_second)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn throughput(
    area: &Area<'_>,
    caption: &str,
    x_desc: &str,
    worker: &[(f64, f64)],
    report: &BenchReport,
) -> Result<(), Box<dyn std::error::Error + 'static>> {
    let broker = report.broker_ceiling.per_second;
    let database = report.database_ceiling.per_second;
    let x_max = worker.iter().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = worker
        .iter()
        .map(|p| p.1)
        .chain([broker, database])
        .fold(1.0, f64::max)
        * 1.45;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(x_desc)
        .y_desc("notifications/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (value, color, name) in [
        (broker, BROKER, "broker ceiling"),
        (database, DATABASE, "database ceiling"),
    ] {
        chart
            .draw_series(LineSeries::new(
                [(0.0, value), (x_max, value)],
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .draw_series(LineSeries::new(
            worker.iter().copied(),
            WORKER.stroke_width(2),
        ))?
        .label("worker")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], WORKER.stroke_width(2)));
    chart.draw_series(worker.iter().map(|p| Circle::new(*p, 4, WORKER.filled())))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn latency(
    area: &Area<'_>,
    report: &BenchReport,
) -> Result<(), Box<dyn std::error::Error + 'static>> {
    let Some(offered) = &report.offered else {
        return Ok(());
    };
    let p = offered.worker.latency_ms;
    let bars = [
        ("p50", p.p50),
        ("p95", p.p95),
        ("p99", p.p99),
        ("max", p.max),
    ];
    let y_max = bars
        .iter()
        .map(|b| b.1)
        .chain([TARGET_P99_MS])
        .fold(1.0, f64::max)
        * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("publish-to-commit latency at {}/s offered", offered.rate),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..bars.len() as f64, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(0)
        .y_desc("milliseconds")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
        let x = i as f64;
        Rectangle::new([(x + 0.2, 0.0), (x + 0.8, *value)], OFFERED.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (name, value))| {
        Text::new(
            format!("{name} {value:.1}"),
            (i as f64 + 0.22, *value + y_max * 0.02),
            ("sans-serif", 13),
        )
    }))?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, TARGET_P99_MS), (bars.len() as f64, TARGET_P99_MS)],
            BROKER.stroke_width(1),
        ))?
        .label("p99 target")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BROKER.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
