//! A picture of a run: throughput over time (sent and received per
//! second) and the latency distribution (latency by percentile, log
//! scale), in one self-contained SVG.

use std::fmt::Write;

use crate::report::Report;

const W: f64 = 900.0;
const H: f64 = 300.0;
const PAD: f64 = 60.0;

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let total_h = 2.0 * H + 3.0 * 30.0;
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif" font-size="12">"##
    );
    let _ = write!(s, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let title = format!(
        "{:?} {} B x{} producers, {} consumers: {:.0} msg/s received, p99 {} µs{}",
        r.protocol,
        r.options.size,
        r.options.producers,
        r.options.consumers,
        r.received_per_s,
        r.latency_us.p99,
        if r.passed { "" } else { " (FAILED)" }
    );
    let _ = write!(
        s,
        r##"<text x="{PAD}" y="20" font-size="14">{}</text>"##,
        escape(&title)
    );
    throughput(&mut s, r, 30.0);
    latency(&mut s, r, 30.0 + H + 30.0);
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn axes(s: &mut String, top: f64, x_label: &str, y_label: &str) {
    let (x0, y0, x1) = (PAD, top + H - PAD / 2.0, W - 20.0);
    let _ = write!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/><line x1="{x0}" y1="{top}" x2="{x0}" y2="{y0}" stroke="#333"/>"##
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"##,
        (x0 + x1) / 2.0,
        y0 + 28.0,
        escape(x_label),
        top + H / 2.0,
        top + H / 2.0,
        escape(y_label)
    );
}

fn throughput(s: &mut String, r: &Report, top: f64) {
    axes(s, top, "seconds", "messages per second");
    let t_max = r.series.last().map_or(1.0, |p| p.t_s).max(1.0);
    let v_max = r
        .series
        .iter()
        .map(|p| p.sent_per_s.max(p.received_per_s))
        .fold(1.0, f64::max);
    let x = |t: f64| PAD + (W - 20.0 - PAD) * t / t_max;
    let y = |v: f64| top + (H - PAD / 2.0) - (H - PAD / 2.0 - 10.0) * v / v_max;
    for frac in [0.0, 0.5, 1.0] {
        let v = v_max * frac;
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>"##,
            PAD - 4.0,
            y(v) + 4.0,
            human(v)
        );
    }
    for (label, color, pick) in [("sent", "#1f77b4", 0usize), ("received", "#d62728", 1usize)] {
        let points: Vec<String> = r
            .series
            .iter()
            .map(|p| {
                let v = if pick == 0 {
                    p.sent_per_s
                } else {
                    p.received_per_s
                };
                format!("{:.1},{:.1}", x(p.t_s), y(v))
            })
            .collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
        let ly = top + 14.0 + 16.0 * pick as f64;
        let _ = write!(
            s,
            r##"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{label}</text>"##,
            W - 120.0,
            ly - 4.0,
            W - 104.0,
            ly
        );
    }
}

fn latency(s: &mut String, r: &Report, top: f64) {
    axes(s, top, "percentile", "latency (µs, log scale)");
    let curve = &r.latency_curve;
    if curve.is_empty() {
        return;
    }
    // Percentiles on a "nines" scale, so the tail gets room: x = -log10(1 - p/100).
    let nines = |p: f64| -((1.0 - p / 100.0).max(1e-5)).log10();
    let x_max = nines(99.999);
    let v_max = curve.iter().map(|c| c.1).max().unwrap_or(1).max(1) as f64;
    let v_min = curve.iter().map(|c| c.1).min().unwrap_or(1).max(1) as f64;
    let (l_min, l_max) = (
        v_min.log10().floor(),
        v_max.log10().ceil().max(v_min.log10().floor() + 1.0),
    );
    let x = |p: f64| PAD + (W - 20.0 - PAD) * nines(p) / x_max;
    let y = |v: f64| {
        let l = (v.max(1.0)).log10();
        top + (H - PAD / 2.0) - (H - PAD / 2.0 - 10.0) * (l - l_min) / (l_max - l_min)
    };
    let mut decade = l_min;
    while decade <= l_max {
        let v = 10f64.powf(decade);
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>"##,
            PAD - 4.0,
            y(v) + 4.0,
            human(v)
        );
        decade += 1.0;
    }
    for p in [50.0, 90.0, 99.0, 99.9, 99.99] {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{p}</text>"##,
            x(p),
            top + H - PAD / 2.0 + 14.0
        );
    }
    let points: Vec<String> = curve
        .iter()
        .filter(|(p, _)| *p < 100.0)
        .map(|&(p, v)| format!("{:.1},{:.1}", x(p), y(v as f64)))
        .collect();
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#2ca02c" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
