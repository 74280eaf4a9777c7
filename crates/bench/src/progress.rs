//! The live progress line on stderr while a run goes: requests done (of
//! `--total`, or seconds of `--duration`), the current rate and errors.
//!
//! The clients only bump two atomic counters; a separate task reads them
//! every [`TICK`] and redraws with `indicatif`, so the line costs the hot
//! loop nothing and the terminal at most ten redraws a second. It is drawn
//! only when stderr is a terminal or `--progress` asks for it, and never
//! touches stdout, where `--json` goes.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The current rate is measured over about this window, so it follows
/// changes within a second or two without jumping at every tick.
const RATE_WINDOW: usize = 20;

/// Counters the clients bump as requests finish.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests that succeeded.
    pub(crate) ok: AtomicU64,
    /// Requests that failed.
    pub(crate) errors: AtomicU64,
}

/// What the bar counts towards.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Goal {
    /// This many requests.
    Requests(u64),
    /// This long.
    Time(Duration),
}

/// Whether to draw the line: asked for with `--progress`, or stderr is a terminal.
pub(crate) fn wanted(forced: bool) -> bool {
    forced || std::io::stderr().is_terminal()
}

/// A progress line being drawn.
pub(crate) struct Progress {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing the progress of a run that started at `started`.
    pub(crate) fn start(goal: Goal, counters: Arc<Counters>, started: Instant) -> Progress {
        // indicatif's plain stderr target hides itself when stderr is not a
        // terminal; `--progress` asked for the line anyway (e.g. under `script`).
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 10);
        let (len, template) = match goal {
            Goal::Requests(n) => (n, "[{elapsed_precise}] {bar:20} {pos}/{len} req, {msg}"),
            Goal::Time(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "[{elapsed_precise}] {bar:20} {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        // The templates are constants; a bad one would show as the default style.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut window: VecDeque<(Instant, u64)> = VecDeque::with_capacity(RATE_WINDOW + 1);
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let ok = counters.ok.load(Ordering::Relaxed);
                let errors = counters.errors.load(Ordering::Relaxed);
                let done = ok + errors;
                window.push_back((now, done));
                if window.len() > RATE_WINDOW {
                    window.pop_front();
                }
                let rate = match (window.front(), window.back()) {
                    (Some(&(t0, d0)), Some(&(t1, d1))) if t1 > t0 => {
                        (d1 - d0) as f64 / (t1 - t0).as_secs_f64()
                    }
                    _ => 0.0,
                };
                match goal {
                    Goal::Requests(_) => {
                        shown.set_position(done);
                        shown.set_message(format!("{rate:.0} req/s, {errors} errors"));
                    }
                    Goal::Time(d) => {
                        let elapsed = now.duration_since(started);
                        shown.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                        shown.set_message(format!(
                            "{}/{} s, {done} req, {rate:.0} req/s, {errors} errors",
                            elapsed.as_secs().min(d.as_secs()),
                            d.as_secs()
                        ));
                    }
                }
            }
        });
        Progress { bar, task }
    }

    /// Stops drawing and clears the line, so the report starts on a clean one.
    pub(crate) fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
