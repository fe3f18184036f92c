//! The HTML audit report: one file, inline CSS and SVG, no script, no network.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::audit::{fmt_num, ids_text, AuditReport, Series};
use mithridate_core::Verdict;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn badge(v: Verdict) -> String {
    let cls = match v {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
    };
    format!("<span class=\"badge {cls}\">{v}</span>")
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.pass{background:#2e7d32}.warn{background:#b26a00}.fail{background:#c62828}.card{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:12px 16px;margin:12px 0}
.meta{color:#5b6475}.tag{display:inline-block;background:#e8eaf6;border-radius:4px;padding:0 6px;margin:0 4px 0 0;font-size:12px}
pre{background:#fff;border:1px solid #d5d9e0;padding:12px;overflow:auto}svg text{font:11px system-ui,sans-serif;fill:#1d2433}
td.code{font:12px ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.plots{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{color:#5b6475;font-size:12px}";

/// Render the whole report.
pub fn render(r: &AuditReport) -> String {
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&r.title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"meta\">Gate {} · tier <b>{}</b> · stages {} · mithridate {} · {} · schema {}</p>",
        esc(&r.title),
        badge(r.verdict),
        r.policy.tier,
        esc(&r.stages.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        esc(&r.tool_version),
        esc(&r.generated_at),
        esc(&r.schema)
    );

    for n in &r.gate_notes {
        let _ = write!(h, "<p class=\"meta\">{}</p>", esc(n));
    }
    // Posture: the auditor's first question.
    let _ = write!(
        h,
        "<h2 id=\"posture\">Posture</h2><p>Tier <b>{}</b> requires {}.</p><p>Model checked: {}.</p>",
        r.policy.tier,
        esc(&r.policy.requirement),
        esc(&r.policy.model)
    );
    h.push_str("<table><tr><th>control</th><th>layer</th><th>stage</th><th>status</th><th>verdict</th><th>note</th></tr>");
    for p in &r.posture {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name),
            p.layer,
            p.stage,
            esc(&p.status),
            p.verdict.map_or_else(String::new, badge),
            esc(&p.note)
        );
    }
    h.push_str("</table>");

    for t in &r.tables {
        let _ = write!(h, "<h2>{}</h2><table><tr>", esc(&t.title));
        for c in &t.columns {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>");
        for row in &t.rows {
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<td>{}</td>", esc(c));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    if !r.series.is_empty() {
        h.push_str("<h2>Plots</h2><div class=\"plots\">");
        for s in &r.series {
            h.push_str(&line_chart(s));
        }
        h.push_str("</div>");
    }

    h.push_str("<h2 id=\"controls\">Controls</h2>");
    for rep in &r.reports {
        let _ = write!(
            h,
            "<div class=\"card\"><h3>{} {}</h3><p class=\"meta\">layer {} · stage {} · {:.0} ms</p><p>{}</p>",
            esc(&rep.defense),
            badge(rep.verdict),
            rep.layer,
            rep.stage,
            rep.elapsed_ms,
            esc(&rep.summary)
        );
        if !rep.metrics.is_empty() {
            h.push_str("<table><tr><th>metric</th><th>value</th></tr>");
            for (k, v) in &rep.metrics {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), fmt_num(*v));
            }
            h.push_str("</table>");
        }
        if !rep.scores.is_empty() {
            h.push_str(&histogram(
                &rep.scores,
                &format!("{} — per-sample scores", rep.defense),
            ));
        }
        if !rep.findings.is_empty() {
            let _ = write!(h, "<p><b>{} findings</b></p><ul>", rep.findings.len());
            for f in rep.findings.iter().take(25) {
                let tags: String = f
                    .tags
                    .iter()
                    .map(|t| {
                        format!(
                            "<span class=\"tag\" title=\"{}\">{}</span>",
                            esc(&t.title),
                            esc(&t.to_string())
                        )
                    })
                    .collect();
                let _ = write!(
                    h,
                    "<li>score {} — {} {tags}",
                    fmt_num(f.score),
                    esc(&f.reason)
                );
                if !f.ids.is_empty() {
                    let _ = write!(
                        h,
                        "<br><span class=\"meta\">samples: {}</span>",
                        esc(&ids_text(&f.ids, 16))
                    );
                }
                h.push_str(&detail_image(&f.detail));
                h.push_str("</li>");
            }
            if rep.findings.len() > 25 {
                let _ = write!(
                    h,
                    "<li class=\"meta\">… {} more in report.json</li>",
                    rep.findings.len() - 25
                );
            }
            h.push_str("</ul>");
        }
        h.push_str("</div>");
    }

    let _ = write!(
        h,
        "<h2 id=\"quarantine\">Quarantine ({} samples)</h2>",
        r.quarantine.len()
    );
    if !r.quarantine.is_empty() {
        h.push_str("<table><tr><th>id</th><th>score</th><th>status</th><th>reasons</th><th>trigger</th></tr>");
        for q in r.quarantine.iter().take(200) {
            let reasons: Vec<String> = q
                .reasons
                .iter()
                .map(|x| format!("{} ({}): {}", x.detector, fmt_num(x.score), x.message))
                .collect();
            let status = serde_json::to_value(&q.status)
                .ok()
                .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"code\">{}</td></tr>",
                esc(&q.id.to_string()),
                fmt_num(q.score),
                esc(&status),
                esc(&reasons.join("; ")),
                esc(&q
                    .trigger
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default())
            );
        }
        h.push_str("</table>");
        if r.quarantine.len() > 200 {
            let _ = write!(
                h,
                "<p class=\"meta\">… {} more in report.json</p>",
                r.quarantine.len() - 200
            );
        }
    }
    let _ = write!(
        h,
        "<h2>Effective policy</h2><pre>{}</pre>",
        esc(&r.policy.to_text())
    );
    if !r.artifacts.is_empty() {
        let _ = write!(
            h,
            "<h2>Artifacts</h2><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(&r.artifacts).unwrap_or_default())
        );
    }
    h.push_str("</main></body></html>\n");
    h
}

/// An image carried in a finding's detail: `image_svg` (SVG text) or
/// `image_png_base64`. Embedded as a data URI in an `<img>`, so nothing in it runs.
fn detail_image(d: &serde_json::Value) -> String {
    if let Some(svg) = d.get("image_svg").and_then(|v| v.as_str()) {
        let b = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
        return format!("<br><img alt=\"recovered trigger\" width=\"96\" height=\"96\" src=\"data:image/svg+xml;base64,{b}\">");
    }
    if let Some(png) = d.get("image_png_base64").and_then(|v| v.as_str()) {
        if png
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        {
            return format!("<br><img alt=\"recovered trigger\" width=\"96\" height=\"96\" src=\"data:image/png;base64,{png}\">");
        }
    }
    String::new()
}

/// SVG histogram of `values` (30 bins).
pub fn histogram(values: &[f64], title: &str) -> String {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return String::new();
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let bins = 30usize;
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let mut counts = vec![0usize; bins];
    for x in &v {
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (w, hgt, pad) = (480.0, 200.0, 30.0);
    let bw = (w - 2.0 * pad) / bins as f64;
    let mut s = format!("<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"{}\">", esc(title));
    let _ = write!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{hgt}\" fill=\"#fff\"/>"
    );
    for (i, &c) in counts.iter().enumerate() {
        // Log-scaled heights: a few poisoned samples stay visible beside thousands of clean ones.
        let frac = if c == 0 {
            0.0
        } else {
            (1.0 + c as f64).ln() / (1.0 + max).ln()
        };
        let bh = frac * (hgt - 2.0 * pad);
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#3f51b5\"><title>{c}</title></rect>",
            pad + i as f64 * bw,
            hgt - pad - bh,
            (bw - 1.0).max(0.5),
            bh
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#555\"/><text x=\"{pad}\" y=\"{ty}\">{}</text><text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\">{}</text><text x=\"{pad}\" y=\"14\">count (log scale), max {}</text></svg><figcaption>{}</figcaption></figure>",
        fmt_num(lo),
        fmt_num(hi),
        max,
        esc(title),
        y = hgt - pad,
        x2 = w - pad,
        ty = hgt - 10.0
    );
    s
}

/// SVG line chart of a [`Series`].
pub fn line_chart(sr: &Series) -> String {
    let pts: Vec<(f64, f64)> = sr
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (w, hgt, pad) = (480.0, 240.0, 40.0);
    let (xlo, xhi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (ylo, yhi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (ylo, yhi) = (ylo.min(0.0), if yhi > ylo { yhi } else { ylo + 1.0 });
    let xs = |x: f64| {
        pad + if xhi > xlo {
            (x - xlo) / (xhi - xlo)
        } else {
            0.5
        } * (w - 2.0 * pad)
    };
    let ys = |y: f64| hgt - pad - (y - ylo) / (yhi - ylo) * (hgt - 2.0 * pad);
    let mut s = format!("<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"{}\">", esc(&sr.title));
    let _ = write!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{hgt}\" fill=\"#fff\"/>"
    );
    let _ = write!(s, "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#555\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#555\"/>", b = hgt - pad, r = w - pad);
    let poly: Vec<String> = pts
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
        .collect();
    let _ = write!(s, "<polyline class=\"line\" fill=\"none\" stroke=\"#c62828\" stroke-width=\"2\" points=\"{}\"/>", poly.join(" "));
    for &(x, y) in &pts {
        let _ = write!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c62828\"><title>{}: {}</title></circle>", xs(x), ys(y), fmt_num(x), fmt_num(y));
    }
    let _ = write!(
        s,
        "<text x=\"{pad}\" y=\"{ty}\">{}</text><text x=\"{r}\" y=\"{ty}\" text-anchor=\"end\">{} → {}</text><text x=\"4\" y=\"{t}\">{}</text><text x=\"4\" y=\"{bb}\">{}</text><text x=\"{pad}\" y=\"14\">{}</text></svg><figcaption>{}</figcaption></figure>",
        fmt_num(xlo),
        esc(&sr.x_label),
        fmt_num(xhi),
        fmt_num(yhi),
        fmt_num(ylo),
        esc(&sr.y_label),
        esc(&sr.title),
        ty = hgt - 12.0,
        r = w - pad,
        t = pad,
        bb = hgt - pad
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn plots_have_one_bar_per_bin_and_one_point_per_value() {
        let h = histogram(&[0.0, 1.0, 1.0, 5.0], "t");
        assert_eq!(h.matches("class=\"bar\"").count(), 30);
        let s = Series {
            title: "acc".into(),
            x_label: "eps".into(),
            y_label: "acc".into(),
            points: vec![(1.0, 0.8), (3.0, 0.9), (8.0, 0.95)],
        };
        assert_eq!(line_chart(&s).matches("<circle").count(), 3);
        assert!(histogram(&[f64::NAN], "t").is_empty());
    }
}
