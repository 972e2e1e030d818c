//! What a run leaves for people: `report.md` (the metrics table) and `loss.svg` (training and
//! evaluation loss, and the best-model metric when it is not the loss, over steps).

use crate::state::TrainerState;
use crate::{Result, TrainError};
use plotters::prelude::*;
use serde_json::{Map, Value};
use std::path::Path;

/// `(step, value)` of `key` in the entries that have it.
fn series(log: &[Map<String, Value>], key: &str) -> Vec<(f64, f64)> {
    log.iter()
        .filter_map(|e| Some((e.get("step")?.as_f64()?, e.get(key)?.as_f64()?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// The legend box, on a plain or a dual-axis chart (two types with the same method).
macro_rules! legend {
    ($chart:expr) => {
        $chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| TrainError::Unsupported(format!("legend: {e}")))?
    };
}

/// Draw `loss.svg`: `loss` and `eval_loss` on one axis, `metric` (e.g. `eval_rouge1`) on a
/// second when given.
pub fn plot(state: &TrainerState, metric: Option<&str>, path: &Path) -> Result<()> {
    let train = series(&state.log_history, "loss");
    let eval = series(&state.log_history, "eval_loss");
    let extra = metric.map(|m| (m, series(&state.log_history, m)));
    let err = |e: String| TrainError::Unsupported(format!("{}: {e}", path.display()));
    let all: Vec<&(f64, f64)> = train.iter().chain(&eval).collect();
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let (y_min, y_max) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (y_min, y_max) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        (y_min, y_max)
    };
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss over optimizer steps", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(if extra.is_some() { 60 } else { 0 })
        .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
        .map_err(|e| err(e.to_string()))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !eval.is_empty() {
        chart
            .draw_series(LineSeries::new(eval.iter().copied(), &RED))
            .map_err(|e| err(e.to_string()))?
            .label("eval loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .draw_series(eval.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    if let Some((name, pts)) = extra.filter(|(_, p)| !p.is_empty()) {
        let (lo, hi) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = chart.set_secondary_coord(0f64..x_max, (lo - pad)..(hi + pad));
        chart
            .configure_secondary_axes()
            .y_desc(name)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_secondary_series(LineSeries::new(pts.iter().copied(), &GREEN))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        legend!(chart);
    } else {
        legend!(chart);
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// `report.md`: the run's summary and one table row per evaluation.
pub fn write_report(state: &TrainerState, title: &str, picture: &str, path: &Path) -> Result<()> {
    let mut md = format!("# {title}\n\n![loss]({picture})\n\n");
    let last = state.log_history.last();
    let get = |k: &str| last.and_then(|e| e.get(k)).and_then(Value::as_f64);
    md.push_str(&format!(
        "- optimizer steps: {}\n- epochs: {:.2}\n- mean training loss: {}\n- runtime: {} s\n",
        state.global_step,
        state.epoch,
        get("train_loss")
            .map(|v| format!("{v:.4}"))
            .unwrap_or_default(),
        get("train_runtime")
            .map(|v| format!("{v:.1}"))
            .unwrap_or_default(),
    ));
    if let (Some(m), Some(s)) = (state.best_metric, state.best_global_step) {
        md.push_str(&format!("- best metric: {m:.4} at step {s}\n"));
    }
    let evals: Vec<&Map<String, Value>> = state
        .log_history
        .iter()
        .filter(|e| e.keys().any(|k| k.starts_with("eval_")))
        .collect();
    if !evals.is_empty() {
        let mut keys: Vec<&String> = evals
            .iter()
            .flat_map(|e| e.keys())
            .filter(|k| {
                k.starts_with("eval_") && !k.ends_with("runtime") && !k.ends_with("per_second")
            })
            .collect();
        keys.sort();
        keys.dedup();
        md.push_str("\n| step | epoch |");
        for k in &keys {
            md.push_str(&format!(" {k} |"));
        }
        md.push_str("\n|---|---|");
        md.push_str(&"---|".repeat(keys.len()));
        md.push('\n');
        for e in evals {
            let f = |k: &str| e.get(k).and_then(Value::as_f64);
            md.push_str(&format!(
                "| {} | {:.2} |",
                f("step").unwrap_or(0.0),
                f("epoch").unwrap_or(0.0)
            ));
            for k in &keys {
                md.push_str(&format!(
                    " {} |",
                    f(k).map(|v| format!("{v:.4}")).unwrap_or_default()
                ));
            }
            md.push('\n');
        }
    }
    std::fs::write(path, md).map_err(crate::error::file_err(path))
}
