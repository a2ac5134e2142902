//! The live progress bar: how far the run is, by messages or by time, with the rate over the
//! last second. Drawn on stderr only when it is a terminal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// What the bar counts towards.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    Messages(u64),
    Duration(Duration),
}

#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(200);

impl Progress {
    /// Starts a bar for `label` fed by `count`.
    pub fn start(label: &str, goal: Goal, count: Arc<AtomicU64>) -> Progress {
        let (length, template) = match goal {
            Goal::Messages(messages) => (
                messages,
                "{prefix} [{bar:40}] {pos}/{len} msgs {msg} ({elapsed})",
            ),
            Goal::Duration(duration) => (
                u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                "{prefix} [{bar:40}] {msg} ({elapsed}/{duration})",
            ),
        };
        let bar = ProgressBar::new(length).with_prefix(label.to_string());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let bar = bar.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || tick(&bar, goal, &count, &stop))
        };
        Progress {
            bar,
            stop,
            ticker: Some(ticker),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tick(bar: &ProgressBar, goal: Goal, count: &AtomicU64, stop: &AtomicBool) {
    let started = Instant::now();
    let mut window: VecDeque<(Instant, u64)> = VecDeque::with_capacity(8);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let done = count.load(Ordering::Relaxed);
        window.push_back((now, done));
        while window.len() > 6 {
            window.pop_front();
        }
        let rate = match (window.front(), window.back()) {
            (Some((first_at, first)), Some((last_at, last))) if last_at > first_at => {
                #[allow(clippy::cast_precision_loss)]
                let delta = (last - first) as f64;
                delta / (*last_at - *first_at).as_secs_f64()
            }
            _ => 0.0,
        };
        bar.set_message(format!("{rate:.0} msg/s"));
        match goal {
            Goal::Messages(_) => bar.set_position(done),
            Goal::Duration(_) => {
                bar.set_position(u64::try_from((now - started).as_millis()).unwrap_or(u64::MAX))
            }
        }
    }
}
