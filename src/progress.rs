//! Progress bars on stderr with indicatif, drawn only when stderr is a
//! terminal (or `--progress always`), so cron mail and logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ProgressMode;

/// The progress display of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: MultiProgress,
}

impl Progress {
    /// A display that draws according to `mode`.
    pub fn new(mode: ProgressMode) -> Self {
        let target = match mode {
            ProgressMode::Never => ProgressDrawTarget::hidden(),
            ProgressMode::Auto if !std::io::stderr().is_terminal() => ProgressDrawTarget::hidden(),
            ProgressMode::Auto => ProgressDrawTarget::stderr(),
            // indicatif's stderr target hides itself off a terminal; a TermLike target does not.
            ProgressMode::Always => {
                ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::buffered_stderr()), 20)
            }
        };
        Progress { bars: MultiProgress::with_draw_target(target) }
    }

    /// A bar counting bytes out of `total`.
    pub fn bytes(&self, message: &str, total: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        self.add(ProgressBar::new(total).with_style(style), message)
    }

    /// A spinner counting `unit`s (rows, messages), with no known total.
    pub fn count(&self, message: &str, unit: &str) -> ProgressBar {
        let template = format!("{{msg:>10}} {{spinner}} {{human_pos}} {unit} {{per_sec}} {{elapsed}}");
        let style = ProgressStyle::with_template(&template).expect("valid template");
        let bar = self.add(ProgressBar::new_spinner().with_style(style), message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    fn add(&self, bar: ProgressBar, message: &str) -> ProgressBar {
        let bar = self.bars.add(bar);
        bar.set_message(message.to_string());
        bar
    }

    /// Prints a line above the bars (or plainly when they are hidden).
    pub fn println(&self, line: &str) {
        if self.bars.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }
}
