//! The bench report: one data structure, rendered in one place as a terminal table with a latency
//! histogram, as JSON (`--json`), and as a self-contained HTML page with inline SVG charts (`--html`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::Delivery;

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of µs values.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Which server was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The URL connected to.
    pub url: String,
    /// "in-process wschat relay" or "external server".
    pub server: String,
    /// The server's pid when it was found (loopback) or this process for the in-process relay.
    pub pid: Option<u32>,
    /// Every pid listening on the server's port (several share it with SO_REUSEPORT); memory and
    /// server CPU are their sums.
    pub pids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub mode: &'static str,
    pub transport: &'static str,
    pub clients: usize,
    pub rooms: usize,
    pub rate_per_client: f64,
    pub offered_per_s: f64,
    pub size: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub ramp_s: f64,
    pub grace_s: f64,
    pub threads: usize,
    pub ack: bool,
    pub churn_per_s: Option<f64>,
    pub namespace: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    /// Successful reconnects under `--churn`.
    pub reconnects: u64,
    /// Time from starting to connect to the Socket.IO CONNECT reply.
    pub connect_ms: Percentiles,
    /// From the first connect attempt to the last successful initial connect.
    pub connect_phase_s: f64,
    /// Connections established per second during the connect phase.
    pub connect_rate_per_s: f64,
    /// Connections still open at the end of the run.
    pub open_at_end: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Messages {
    /// Measured messages sent.
    pub sent: u64,
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Received events without a bench id.
    pub foreign: u64,
    /// Received from a sender in another room.
    pub misrouted: u64,
    /// A sender received its own message.
    pub self_echo: u64,
    pub sent_per_s: f64,
    pub delivered_per_s: f64,
    /// Messages sent during warmup (not measured).
    pub warmup_sent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Acks {
    pub expected: u64,
    pub received: u64,
    pub ack_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// CPU seconds used by the load generator's threads.
    pub generator_s: f64,
    pub generator_user_s: f64,
    pub generator_system_s: f64,
    /// Generator CPU as a fraction of (threads x wall time) over `generator_busy_over`: near 1,
    /// the generator itself may be what limits the run.
    pub generator_busy: f64,
    /// What `generator_busy` covers: `sending` (the warmup and measured window), or `run` (the
    /// whole run, when nothing was sent: idle mode, or stopped while connecting).
    pub generator_busy_over: &'static str,
    /// Received messages per generator CPU second.
    pub received_per_cpu_s: Option<f64>,
    /// CPU seconds of the server, when it is in-process or a local process that was found.
    pub server_s: Option<f64>,
    /// Server CPU per delivered message, µs.
    pub server_us_per_delivery: Option<f64>,
    /// Wall time the CPU figures cover.
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// How it was measured.
    pub source: String,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// (after - before) / connections; only with 100 connections or more.
    pub per_connection_bytes: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Upper bound of the bucket, ms (`None` for the overflow bucket).
    pub le_ms: Option<f64>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondRow {
    /// Second since the start of the measured window.
    pub t_s: u64,
    pub sent: u64,
    pub delivered: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub limit: String,
    pub value: String,
    pub ok: bool,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub wschat: &'static str,
    pub target: Target,
    pub settings: Settings,
    /// Ctrl-C ended the run early; the figures cover what ran.
    pub interrupted: bool,
    /// Wall time of the measured window that actually ran.
    pub measured_s: f64,
    pub connections: Connections,
    pub messages: Option<Messages>,
    /// Delivery latency (raw mode: echo round trip), from the intended send time to when the
    /// message reached the receiving client's socket (see `latency_clock`).
    pub latency_ms: Option<Percentiles>,
    /// What the end of `latency_ms` is: `"kernel receive timestamp"` (every read was stamped),
    /// `"read"` (none was: TLS, polling, or a kernel without `SO_TIMESTAMPNS`), or `"mixed"`.
    pub latency_clock: &'static str,
    /// The same latency to when this generator read each message: `latency_ms` plus `rx_wait_ms`.
    pub latency_at_read_ms: Option<Percentiles>,
    /// How long messages waited in the receiving sockets before this generator read them: its own
    /// delay, which `latency_ms` leaves out (`None` without kernel receive stamps). Measured from
    /// the newest data of each read, so older data in the same read waited longer than this says.
    pub rx_wait_ms: Option<Percentiles>,
    /// How late this generator wrote each message after its intended send time: its own
    /// lateness, which `latency_ms` includes (open loop).
    pub send_lag_ms: Option<Percentiles>,
    pub acks: Option<Acks>,
    pub errors: BTreeMap<String, u64>,
    pub disconnects: BTreeMap<String, u64>,
    pub cpu: Cpu,
    pub memory: Option<Memory>,
    pub histogram: Vec<Bucket>,
    /// (percentile, ms) points of the latency distribution.
    pub distribution: Vec<(f64, f64)>,
    pub timeline: Vec<SecondRow>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Upper bounds of the histogram buckets, µs: 1-2-5 steps from 50 µs to 10 s.
const BUCKETS_US: &[u64] = &[
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// Bucket counts of a µs histogram (empty leading and trailing buckets dropped).
pub fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    // Each recorded value goes to the first bucket whose bound it does not exceed, so the
    // buckets add up to the total exactly.
    let mut counts = vec![0u64; BUCKETS_US.len() + 1];
    for v in h.iter_recorded() {
        let value = h.lowest_equivalent(v.value_iterated_to());
        let i = BUCKETS_US
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(BUCKETS_US.len());
        if let Some(slot) = counts.get_mut(i) {
            *slot += v.count_at_value();
        }
    }
    let out: Vec<Bucket> = counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| Bucket {
            le_ms: BUCKETS_US.get(i).map(|&b| b as f64 / 1000.0),
            count,
        })
        .collect();
    let first = out.iter().position(|b| b.count > 0).unwrap_or(0);
    let last = out.iter().rposition(|b| b.count > 0).unwrap_or(0);
    out.into_iter().take(last + 1).skip(first).collect()
}

/// Percentile points for the distribution chart: 0, 50, 75, 90, 95, 99, 99.5, 99.9, ... 100.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts = Vec::new();
    for p in [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
    ] {
        pts.push((p, h.value_at_percentile(p) as f64 / 1000.0));
    }
    pts.push((100.0, h.max() as f64 / 1000.0));
    pts
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, rounded sensibly.
pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        thousands(r.round() as u64)
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// Milliseconds with 3 significant-ish digits: `0.052 ms`, `1.23 ms`, `45.1 ms`, `1,234 ms`.
pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3} ms")
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{} ms", thousands(v.round() as u64))
    }
}

/// Bytes as KiB/MiB.
pub fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b.abs() >= 10.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn pct_line(p: &Percentiles) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    )
}

fn by_reason(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{} {k}", thousands(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Simple ANSI styling that is a no-op without colour.
struct Style {
    on: bool,
}

impl Style {
    fn bold(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn good(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[32m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bad(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[31;1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn dim(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// The human report for a terminal (or a file): summary table, latency histogram, checks.
pub fn render_text(r: &Report, color: bool) -> String {
    let st = Style { on: color };
    let s = &r.settings;
    let mut o = String::new();
    let head = match s.mode {
        "idle" => format!(
            "wschat bench: idle, {} clients in {} rooms, {}",
            thousands(s.clients as u64),
            s.rooms,
            s.transport
        ),
        "raw" => format!(
            "wschat bench: raw WebSocket echo, {} clients, {}/s each ({}/s offered), {}-byte frames",
            thousands(s.clients as u64),
            rate(s.rate_per_client),
            rate(s.offered_per_s),
            s.size
        ),
        _ => format!(
            "wschat bench: {} clients in {} rooms, {}/s each ({}/s offered), {}-byte messages, {}{}",
            thousands(s.clients as u64),
            s.rooms,
            rate(s.rate_per_client),
            rate(s.offered_per_s),
            s.size,
            s.transport,
            if s.ack { ", acks" } else { "" }
        ),
    };
    let _ = writeln!(o, "{}", st.bold(&head));
    let pid = r
        .target
        .pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "  {:<13}{} at {}{pid}",
        "server", r.target.server, r.target.url
    );
    let mut window = format!("{:.1} s", r.measured_s);
    if s.mode != "idle" {
        window.push_str(&format!(
            " after {:.1} s warmup, {:.1} s grace",
            s.warmup_s, s.grace_s
        ));
    }
    if let Some(c) = s.churn_per_s {
        window.push_str(&format!(", churn {}/s", rate(c)));
    }
    if r.interrupted {
        window.push_str(&format!(" — {}", st.bad("interrupted (Ctrl-C)")));
    }
    let _ = writeln!(
        o,
        "  {:<13}{window}",
        if s.mode == "idle" { "held" } else { "measured" }
    );
    let c = &r.connections;
    let mut conn = format!(
        "{} of {} connected, {} failed, in {:.2} s ({}/s)",
        thousands(c.connected),
        thousands(c.attempted),
        thousands(c.failed),
        c.connect_phase_s,
        rate(c.connect_rate_per_s)
    );
    if c.reconnects > 0 {
        conn.push_str(&format!(", {} reconnects", thousands(c.reconnects)));
    }
    let _ = writeln!(o, "  {:<13}{conn}", "connections");
    if c.connect_ms.count > 0 {
        let _ = writeln!(o, "  {:<13}{}", "connect time", pct_line(&c.connect_ms));
    }
    if let Some(m) = &r.messages {
        let d = &m.delivery;
        let lost = if d.lost > 0 {
            st.bad(&thousands(d.lost))
        } else {
            st.good("0")
        };
        let dup = if d.duplicated > 0 {
            st.bad(&thousands(d.duplicated))
        } else {
            "0".into()
        };
        let _ = writeln!(
            o,
            "  {:<13}sent {}  expected {}  delivered {}  lost {lost}  duplicated {dup}",
            "messages",
            thousands(m.sent),
            thousands(d.expected),
            thousands(d.delivered),
        );
        let mut odd = Vec::new();
        if d.unexpected > 0 {
            odd.push(format!(
                "{} arrived around a join/leave (not counted)",
                thousands(d.unexpected)
            ));
        }
        if m.misrouted > 0 {
            odd.push(st.bad(&format!("{} from another room", thousands(m.misrouted))));
        }
        if m.self_echo > 0 {
            odd.push(st.bad(&format!(
                "{} echoed to their sender",
                thousands(m.self_echo)
            )));
        }
        if m.foreign > 0 {
            odd.push(format!(
                "{} events without a bench id",
                thousands(m.foreign)
            ));
        }
        if !odd.is_empty() {
            let _ = writeln!(o, "  {:<13}{}", "", odd.join("; "));
        }
        let _ = writeln!(
            o,
            "  {:<13}sent {}/s  delivered {}/s",
            "throughput",
            rate(m.sent_per_s),
            rate(m.delivered_per_s)
        );
    }
    if let Some(l) = &r.latency_ms {
        let label = if s.mode == "raw" {
            "echo rtt"
        } else {
            "latency"
        };
        if l.count > 0 {
            let _ = writeln!(o, "  {:<13}{}", label, st.bold(&pct_line(l)));
        } else {
            let _ = writeln!(o, "  {:<13}no measured messages arrived", label);
        }
        // The generator's own share, each on its own line (only when measured).
        let own = [
            (
                "send lag",
                &r.send_lag_ms,
                "this generator's lateness, part of",
            ),
            (
                "read wait",
                &r.rx_wait_ms,
                "in this generator's sockets, left out of",
            ),
        ];
        for (name, p, note) in own {
            if let Some(p) = p.as_ref().filter(|p| p.count > 0) {
                let line = format!("{}  ({note} {label})", pct_line(p));
                let _ = writeln!(o, "  {:<13}{}", name, st.dim(&line));
            }
        }
    }
    if let Some(a) = &r.acks {
        let _ = writeln!(
            o,
            "  {:<13}{} of {}  {}",
            "acks",
            thousands(a.received),
            thousands(a.expected),
            if a.ack_ms.count > 0 {
                pct_line(&a.ack_ms)
            } else {
                String::new()
            }
        );
    }
    let err = by_reason(&r.errors);
    let _ = writeln!(
        o,
        "  {:<13}{}",
        "errors",
        if r.errors.is_empty() {
            err
        } else {
            st.bad(&err)
        }
    );
    let _ = writeln!(o, "  {:<13}{}", "disconnects", by_reason(&r.disconnects));
    let cpu = &r.cpu;
    let mut cpu_line = format!(
        "generator {:.2} s ({:.0}% of {} thread{}{})",
        cpu.generator_s,
        cpu.generator_busy * 100.0,
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        if cpu.generator_busy_over == "sending" {
            " while sending"
        } else {
            ""
        }
    );
    if let Some(per) = cpu.received_per_cpu_s {
        cpu_line.push_str(&format!(", {} msgs/s per core", rate(per)));
    }
    if let Some(sv) = cpu.server_s {
        cpu_line.push_str(&format!("; server {sv:.2} s"));
        if let Some(us) = cpu.server_us_per_delivery {
            cpu_line.push_str(&format!(" ({us:.2} µs per delivery)"));
        }
    }
    let _ = writeln!(o, "  {:<13}{cpu_line}", "cpu");
    if let Some(m) = &r.memory {
        let mut line = format!(
            "{} -> {}",
            bytes(m.rss_before_bytes as f64),
            bytes(m.rss_after_bytes as f64)
        );
        if let Some(per) = m.per_connection_bytes {
            line.push_str(&format!(", {} per connection", bytes(per)));
        }
        line.push_str(&st.dim(&format!(" ({})", m.source)));
        let _ = writeln!(o, "  {:<13}{line}", "server rss");
    }
    if !r.histogram.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{}",
            st.bold(if s.mode == "raw" {
                "echo round trip"
            } else {
                "latency distribution"
            })
        );
        o.push_str(&render_histogram(&r.histogram, 40));
    }
    for n in &r.notes {
        let _ = writeln!(o, "{}", st.dim(&format!("note: {n}")));
    }
    if !r.checks.is_empty() {
        let _ = writeln!(o);
        for c in &r.checks {
            let mark = if c.ok {
                st.good("ok  ")
            } else {
                st.bad("FAIL")
            };
            let _ = writeln!(o, "{mark} {} {} (limit {})", c.name, c.value, c.limit);
        }
    }
    o
}

/// Horizontal bars, one line per bucket.
pub fn render_histogram(b: &[Bucket], width: usize) -> String {
    let total: u64 = b.iter().map(|x| x.count).sum();
    let max = b.iter().map(|x| x.count).max().unwrap_or(0).max(1);
    let mut o = String::new();
    let mut prev: Option<f64> = None;
    for x in b {
        let label = match (prev, x.le_ms) {
            (_, Some(hi)) => format!("≤ {}", ms(hi)),
            (Some(lo), None) => format!("> {}", ms(lo)),
            (None, None) => "all".to_string(),
        };
        let len = ((x.count as f64 / max as f64) * width as f64).round() as usize;
        let len = if x.count > 0 { len.max(1) } else { 0 };
        let share = if total > 0 {
            x.count as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "  {label:>12} {:<width$} {:>12} {share:5.1}%",
            "█".repeat(len),
            thousands(x.count)
        );
        prev = x.le_ms.or(prev);
    }
    o
}

/// The report as one JSON document.
pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page: summary, latency over time, throughput over time, latency
/// distribution. Charts are inline SVG, no scripts or external resources; the JSON report is
/// embedded for tools.
pub fn render_html(r: &Report) -> String {
    let text = render_text(r, false);
    let mut o = String::new();
    o.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    let _ = writeln!(o, "<title>wschat bench — {}</title>", esc(&r.target.url));
    o.push_str(
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}\
         pre{background:#f6f6f6;padding:1em;overflow:auto;font:12px/1.35 ui-monospace,monospace}\
         h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}svg{background:#fff;border:1px solid #ddd}\
         .ax{stroke:#999;stroke-width:1}.grid{stroke:#eee;stroke-width:1}.lbl{font-size:11px;fill:#555}\
         .p50{fill:none;stroke:#1f77b4;stroke-width:2}.p99{fill:none;stroke:#d62728;stroke-width:2}\
         .max{fill:none;stroke:#aaa;stroke-width:1;stroke-dasharray:3 3}\
         .sent{fill:none;stroke:#2ca02c;stroke-width:2}.dlv{fill:none;stroke:#9467bd;stroke-width:2}\
         .bar{fill:#1f77b4}.fail{color:#c00;font-weight:bold}.ok{color:#080}</style></head><body>\n",
    );
    let _ = writeln!(
        o,
        "<h1>wschat bench: {} mode against {}</h1>",
        r.settings.mode,
        esc(&r.target.server)
    );
    if !r.checks.is_empty() {
        o.push_str("<p>");
        for c in &r.checks {
            let class = if c.ok { "ok" } else { "fail" };
            let _ = write!(
                o,
                "<span class=\"{class}\">{} {} {} (limit {})</span><br>",
                if c.ok { "✔" } else { "✘" },
                esc(&c.name),
                esc(&c.value),
                esc(&c.limit)
            );
        }
        o.push_str("</p>\n");
    }
    let _ = writeln!(o, "<pre>{}</pre>", esc(&text));
    if !r.timeline.is_empty() {
        o.push_str("<h2>Latency over time (per second of intended send time)</h2>\n");
        o.push_str(&svg_latency_over_time(&r.timeline));
        o.push_str("<h2>Throughput over time</h2>\n");
        o.push_str(&svg_throughput(&r.timeline));
    }
    if !r.histogram.is_empty() {
        o.push_str("<h2>Latency distribution</h2>\n");
        o.push_str(&svg_histogram(&r.histogram));
        o.push_str("<h2>Latency by percentile</h2>\n");
        o.push_str(&svg_percentiles(&r.distribution));
    }
    // `<` only occurs inside JSON strings, where \u003c means the same: no `</script>` or `<!--`
    // can end or confuse the script element.
    let json = render_json(r).replace('<', "\\u003c");
    let _ = writeln!(
        o,
        "<script type=\"application/json\" id=\"report\">{json}</script>"
    );
    o.push_str("</body></html>\n");
    o
}

const W: f64 = 920.0;
const H: f64 = 280.0;
const ML: f64 = 60.0;
const MR: f64 = 20.0;
const MT: f64 = 20.0;
const MB: f64 = 40.0;

/// "Nice" axis maximum and tick step for `max`.
fn nice(max: f64) -> (f64, f64) {
    if max.is_nan() || max <= 0.0 {
        return (1.0, 0.25);
    }
    let mag = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if max <= m * mag {
            let top = m * mag;
            return (top, top / 4.0);
        }
    }
    (10.0 * mag, 2.5 * mag)
}

/// Opens a chart's `<svg>` and draws its horizontal grid lines with their labels, from 0 to
/// `y_max` every `y_step` (shared by every chart of the page).
fn svg_open_with_y_grid(o: &mut String, y_max: f64, y_step: f64, y_fmt: &dyn Fn(f64) -> String) {
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let mut y = 0.0;
    while y <= y_max * 1.0001 {
        let py = MT + ph - y / y_max * ph;
        let _ = writeln!(
            o,
            "<line class=\"grid\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>",
            ML + pw
        );
        let _ = writeln!(
            o,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ML - 6.0,
            py + 4.0,
            y_fmt(y)
        );
        y += y_step;
    }
}

fn svg_frame(
    o: &mut String,
    x_max: f64,
    y_max: f64,
    y_step: f64,
    x_label: &str,
    y_fmt: &dyn Fn(f64) -> String,
) {
    svg_open_with_y_grid(o, y_max, y_step, y_fmt);
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let (xt, xs) = nice(x_max);
    let mut x = 0.0;
    while x <= xt * 1.0001 && x <= x_max * 1.0001 + xs {
        let px = ML + x / x_max.max(1e-9) * pw;
        if px <= ML + pw + 0.5 {
            let _ = writeln!(
                o,
                "<text class=\"lbl\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x}</text>",
                MT + ph + 16.0
            );
        }
        x += xs;
    }
    let _ = writeln!(
        o,
        "<line class=\"ax\" x1=\"{ML}\" x2=\"{ML}\" y1=\"{MT}\" y2=\"{:.1}\"/>",
        MT + ph
    );
    let _ = writeln!(
        o,
        "<line class=\"ax\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        ML + pw,
        MT + ph,
        MT + ph
    );
    let _ = writeln!(
        o,
        "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_label}</text>",
        ML + pw / 2.0,
        H - 6.0
    );
}

fn polyline(o: &mut String, class: &str, pts: &[(f64, f64)], x_max: f64, y_max: f64) {
    if pts.is_empty() {
        return;
    }
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let coords: Vec<String> = pts
        .iter()
        .map(|&(x, y)| {
            format!(
                "{:.1},{:.1}",
                ML + x / x_max.max(1e-9) * pw,
                MT + ph - (y / y_max).min(1.0) * ph
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "<polyline class=\"{class}\" points=\"{}\"/>",
        coords.join(" ")
    );
}

fn legend(o: &mut String, items: &[(&str, &str)]) {
    let mut x = ML + 10.0;
    for (class, label) in items {
        let _ = writeln!(
            o,
            "<line class=\"{class}\" x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            x + 18.0,
            MT + 6.0,
            MT + 6.0
        );
        let _ = writeln!(
            o,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
            x + 22.0,
            MT + 10.0
        );
        x += 30.0 + label.len() as f64 * 7.0;
    }
}

fn svg_latency_over_time(t: &[SecondRow]) -> String {
    let mut o = String::new();
    let x_max = (t.len() as f64).max(1.0);
    let y_data = t.iter().filter_map(|r| r.p99_ms).fold(0.0, f64::max);
    let (y_max, step) = nice(y_data * 1.05);
    svg_frame(&mut o, x_max, y_max, step, "seconds", &|v| {
        format!("{v} ms")
    });
    let pts = |f: &dyn Fn(&SecondRow) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter()
            .filter_map(|r| f(r).map(|v| (r.t_s as f64 + 0.5, v)))
            .collect()
    };
    polyline(&mut o, "max", &pts(&|r| r.max_ms), x_max, y_max);
    polyline(&mut o, "p50", &pts(&|r| r.p50_ms), x_max, y_max);
    polyline(&mut o, "p99", &pts(&|r| r.p99_ms), x_max, y_max);
    legend(
        &mut o,
        &[("p50", "p50"), ("p99", "p99"), ("max", "max (clipped)")],
    );
    o.push_str("</svg>\n");
    o
}

fn svg_throughput(t: &[SecondRow]) -> String {
    let mut o = String::new();
    let x_max = (t.len() as f64).max(1.0);
    let y_data = t.iter().map(|r| r.sent.max(r.delivered)).max().unwrap_or(0) as f64;
    let (y_max, step) = nice(y_data * 1.05);
    svg_frame(&mut o, x_max, y_max, step, "seconds", &|v| {
        thousands(v as u64)
    });
    let sent: Vec<(f64, f64)> = t
        .iter()
        .map(|r| (r.t_s as f64 + 0.5, r.sent as f64))
        .collect();
    let dlv: Vec<(f64, f64)> = t
        .iter()
        .map(|r| (r.t_s as f64 + 0.5, r.delivered as f64))
        .collect();
    polyline(&mut o, "sent", &sent, x_max, y_max);
    polyline(&mut o, "dlv", &dlv, x_max, y_max);
    legend(&mut o, &[("sent", "sent/s"), ("dlv", "delivered/s")]);
    o.push_str("</svg>\n");
    o
}

fn svg_histogram(b: &[Bucket]) -> String {
    let mut o = String::new();
    let max = b.iter().map(|x| x.count).max().unwrap_or(1).max(1) as f64;
    let (y_max, step) = nice(max * 1.05);
    let n = b.len().max(1) as f64;
    svg_open_with_y_grid(&mut o, y_max, step, &|y| thousands(y as u64));
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let bw = pw / n;
    let mut prev: Option<f64> = None;
    for (i, x) in b.iter().enumerate() {
        let h = x.count as f64 / y_max * ph;
        let px = ML + i as f64 * bw;
        let _ = writeln!(
            o,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}</title></rect>",
            px + 2.0,
            MT + ph - h,
            (bw - 4.0).max(1.0),
            thousands(x.count)
        );
        let label = match (prev, x.le_ms) {
            (_, Some(hi)) => format!("≤{}", ms(hi)),
            (Some(lo), None) => format!(">{}", ms(lo)),
            (None, None) => "all".into(),
        };
        let _ = writeln!(
            o,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            px + bw / 2.0,
            MT + ph + 16.0,
            esc(&label)
        );
        prev = x.le_ms.or(prev);
    }
    let _ = writeln!(
        o,
        "<line class=\"ax\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        ML + pw,
        MT + ph,
        MT + ph
    );
    o.push_str("</svg>\n");
    o
}

/// Latency by percentile on the classic HdrHistogram axis: x = log10(1 / (1 - p)).
fn svg_percentiles(d: &[(f64, f64)]) -> String {
    let mut o = String::new();
    let nines = |p: f64| -> f64 {
        let q = (1.0 - p / 100.0).max(1e-6);
        (1.0 / q).log10()
    };
    let x_max = 6.0;
    let y_data = d.iter().map(|&(_, v)| v).fold(0.0, f64::max);
    let (y_max, step) = nice(y_data * 1.05);
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    );
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let mut y = 0.0;
    while y <= y_max * 1.0001 {
        let py = MT + ph - y / y_max * ph;
        let _ = writeln!(
            o,
            "<line class=\"grid\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>",
            ML + pw
        );
        let _ = writeln!(
            o,
            "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{y} ms</text>",
            ML - 6.0,
            py + 4.0
        );
        y += step;
    }
    for (k, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "max"]
        .iter()
        .enumerate()
    {
        let px = ML + k as f64 / x_max * pw;
        let _ = writeln!(
            o,
            "<text class=\"lbl\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            MT + ph + 16.0
        );
    }
    let pts: Vec<(f64, f64)> = d.iter().map(|&(p, v)| (nines(p).min(x_max), v)).collect();
    polyline(&mut o, "p99", &pts, x_max, y_max);
    let _ = writeln!(
        o,
        "<line class=\"ax\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        ML + pw,
        MT + ph,
        MT + ph
    );
    let _ = writeln!(
        o,
        "<text class=\"lbl\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>",
        ML + pw / 2.0,
        H - 6.0
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::{new_hist, record};

    pub(crate) fn sample_report() -> Report {
        let mut h = new_hist();
        for v in [300u64, 450, 800, 1200, 1500, 2500, 9000, 40_000] {
            for _ in 0..(50_000 / v) {
                record(&mut h, v);
            }
        }
        Report {
            wschat: "0.1.0",
            target: Target {
                url: "http://127.0.0.1:PORT".into(),
                server: "in-process wschat relay".into(),
                pid: None,
                pids: Vec::new(),
            },
            settings: Settings {
                mode: "chat",
                transport: "websocket",
                clients: 500,
                rooms: 50,
                rate_per_client: 10.0,
                offered_per_s: 5000.0,
                size: 64,
                duration_s: 30.0,
                warmup_s: 5.0,
                ramp_s: 5.0,
                grace_s: 2.0,
                threads: 2,
                ack: false,
                churn_per_s: None,
                namespace: "/".into(),
            },
            interrupted: false,
            measured_s: 30.0,
            connections: Connections {
                attempted: 500,
                connected: 500,
                failed: 0,
                reconnects: 0,
                connect_ms: Percentiles {
                    count: 500,
                    mean: 1.0,
                    p50: 0.9,
                    p90: 1.5,
                    p99: 3.2,
                    p999: 4.0,
                    max: 4.0,
                },
                connect_phase_s: 5.0,
                connect_rate_per_s: 100.0,
                open_at_end: 500,
            },
            messages: Some(Messages {
                sent: 150_000,
                delivery: Delivery {
                    expected: 1_350_000,
                    delivered: 1_349_990,
                    lost: 10,
                    duplicated: 0,
                    unexpected: 0,
                },
                foreign: 0,
                misrouted: 0,
                self_echo: 0,
                sent_per_s: 5000.0,
                delivered_per_s: 44_999.7,
                warmup_sent: 25_000,
            }),
            latency_ms: Some(Percentiles::of(&h)),
            latency_clock: "kernel receive timestamp",
            latency_at_read_ms: Some(Percentiles::of(&h)),
            rx_wait_ms: None,
            send_lag_ms: None,
            acks: None,
            errors: BTreeMap::new(),
            disconnects: BTreeMap::from([("server closed".to_string(), 2)]),
            cpu: Cpu {
                generator_s: 3.2,
                generator_user_s: 2.0,
                generator_system_s: 1.2,
                generator_busy: 0.05,
                generator_busy_over: "sending",
                received_per_cpu_s: Some(421_873.0),
                server_s: Some(6.1),
                server_us_per_delivery: Some(4.5),
                wall_s: 32.0,
            },
            memory: None,
            histogram: buckets(&h),
            distribution: distribution(&h),
            timeline: (0..3)
                .map(|t| SecondRow {
                    t_s: t,
                    sent: 5000,
                    delivered: 45_000,
                    p50_ms: Some(0.8),
                    p99_ms: Some(9.0 + t as f64),
                    max_ms: Some(40.0),
                })
                .collect(),
            checks: vec![
                Check {
                    name: "p99".into(),
                    limit: "20 ms".into(),
                    value: "9.01 ms".into(),
                    ok: true,
                },
                Check {
                    name: "lost".into(),
                    limit: "0".into(),
                    value: "10".into(),
                    ok: false,
                },
            ],
            notes: vec![],
        }
    }

    #[test]
    fn buckets_add_up_to_the_total() {
        let mut h = new_hist();
        for v in [10u64, 49, 50, 51, 999, 1000, 1001, 7_000_000, 20_000_000] {
            record(&mut h, v);
        }
        let b = buckets(&h);
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 9);
        assert_eq!(b[0].le_ms, Some(0.05));
        assert_eq!(b[0].count, 3, "10, 49, 50 are <= 50 µs");
        assert_eq!(b.last().unwrap().le_ms, None, "20 s overflows");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(ms(0.0521), "0.052 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(1234.0), "1,234 ms");
        assert_eq!(rate(44_999.7), "45,000");
        assert_eq!(bytes(15.0 * 1024.0), "15.0 KiB");
        assert_eq!(bytes(6660.0 * 1024.0), "6.5 MiB");
    }

    #[test]
    fn terminal_report_snapshot() {
        let text = render_text(&sample_report(), false);
        insta::with_settings!({snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("bench_report_text", text);
        });
    }

    #[test]
    fn json_report_round_trips_and_names_the_fields() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample_report())).unwrap();
        assert_eq!(v["messages"]["lost"], 10);
        assert_eq!(v["messages"]["expected"], 1_350_000);
        assert_eq!(v["target"]["server"], "in-process wschat relay");
        assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
        assert_eq!(v["checks"][1]["ok"], false);
    }

    #[test]
    fn html_is_self_contained() {
        let mut r = sample_report();
        r.target.url = "http://127.0.0.1:3001/<script>".into();
        let html = render_html(&r);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<svg") && html.contains("<polyline class=\"p99\""));
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "no external resources"
        );
        assert!(
            !html.contains("/<script>") && html.contains("/&lt;script&gt;"),
            "text is escaped"
        );
        let json_start = html.find("id=\"report\">").unwrap() + "id=\"report\">".len();
        let json_end = html[json_start..].find("</script>").unwrap() + json_start;
        let v: serde_json::Value = serde_json::from_str(&html[json_start..json_end]).unwrap();
        assert_eq!(v["settings"]["clients"], 500);
        assert_eq!(v["target"]["url"], "http://127.0.0.1:3001/<script>");
    }

    #[test]
    fn nice_axis_covers_the_data() {
        for v in [0.3, 1.0, 7.0, 12.0, 99.0, 1234.0] {
            let (top, step) = nice(v);
            assert!(top >= v && step > 0.0, "{v} -> {top}");
        }
    }
}
