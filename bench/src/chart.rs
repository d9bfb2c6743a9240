//! The SVG chart of a report: one band per row, one bar per column, the
//! bar's length the column's time over the kernel's on a log scale, so
//! that 2x slower and 2x faster are equally long either side of 1.

use crate::report::{Report, ratio};
use crate::row::REFERENCE;
use std::fmt::Write as _;

const LABEL_WIDTH: f64 = 240.0;
const PLOT_WIDTH: f64 = 560.0;
const BAR_HEIGHT: f64 = 11.0;
const BAND_GAP: f64 = 10.0;
const TOP: f64 = 50.0;
const COLORS: [(&str, &str); 5] = [
    ("vm", "#1f77b4"),
    ("interp", "#9467bd"),
    ("kernel", "#7f7f7f"),
    ("rbpf", "#ff7f0e"),
    ("native", "#2ca02c"),
];

fn color(column: &str) -> &'static str {
    COLORS
        .iter()
        .find(|(c, _)| *c == column)
        .map_or("#000000", |(_, color)| color)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws `report`'s `columns`.
pub fn draw(report: &Report, columns: &[&'static str]) -> String {
    // Each row's bars, relative to its kernel figure or else its VM's.
    let bars: Vec<(String, Vec<(&str, f64)>)> = report
        .rows
        .iter()
        .map(|row| {
            let (base, base_name) = match row.median(REFERENCE) {
                Some(k) => (Some(k), REFERENCE),
                None => (row.median("vm"), "vm"),
            };
            let label = if base_name == REFERENCE {
                row.name.clone()
            } else {
                format!("{} (to vm)", row.name)
            };
            let bars = columns
                .iter()
                .filter_map(|c| Some((*c, ratio(row.median(c), base)?)))
                .collect();
            (label, bars)
        })
        .collect();
    let logs = bars
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, r)| r.log10()));
    let (lo, hi) = logs.fold((0.0f64, 0.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (lo, hi) = (lo.floor().min(-1.0), hi.ceil().max(1.0));
    let x = |log: f64| LABEL_WIDTH + (log - lo) / (hi - lo) * PLOT_WIDTH;
    let band = |bars: usize| bars.max(1) as f64 * BAR_HEIGHT + BAND_GAP;
    let height = TOP + bars.iter().map(|(_, b)| band(b.len())).sum::<f64>() + 40.0;
    let width = LABEL_WIDTH + PLOT_WIDTH + 80.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="18" font-size="13">bpfvisor bench: time per run relative to the host kernel (log scale, shorter is faster)</text>"#
    );
    let m = &report.machine;
    let _ = writeln!(
        svg,
        r#"<text x="10" y="34" fill="grey">{} · {} CPUs · kernel {} · {}</text>"#,
        escape(&m.cpu),
        m.cpus,
        escape(&m.kernel),
        escape(&m.date)
    );
    // Decades, with 1x in bold.
    let plot_bottom = height - 30.0;
    let mut decade = lo as i32;
    while decade <= hi as i32 {
        let at = x(f64::from(decade));
        let weight = if decade == 0 { "2" } else { "0.5" };
        let _ = writeln!(
            svg,
            r#"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{plot_bottom:.1}" stroke="silver" stroke-width="{weight}"/>"#
        );
        let label = 10f64.powi(decade);
        let _ = writeln!(
            svg,
            r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{label}x</text>"#,
            plot_bottom + 14.0
        );
        decade += 1;
    }
    let mut y = TOP;
    for (label, row_bars) in &bars {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_WIDTH - 8.0,
            y + BAR_HEIGHT,
            escape(label)
        );
        for (i, (column, r)) in row_bars.iter().enumerate() {
            let top = y + i as f64 * BAR_HEIGHT;
            let (a, b) = (x(0.0), x(r.log10()));
            let (left, w) = (a.min(b), (a - b).abs().max(1.0));
            let _ = writeln!(
                svg,
                r#"<rect x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{column}: {r:.2}x</title></rect>"#,
                BAR_HEIGHT - 1.0,
                color(column)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="9">{column} {r:.2}x</text>"#,
                a.max(b) + 3.0,
                top + BAR_HEIGHT - 2.0
            );
        }
        y += band(row_bars.len());
    }
    svg.push_str("</svg>\n");
    svg
}
