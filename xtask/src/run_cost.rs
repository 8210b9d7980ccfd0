//! `cargo xtask run-cost [--rows N] [--pairs K] [--together] [--instructions]`: what telemetry
//! costs a whole bot run. A release invbot runs the same generated input K times exporting to the stack's collector
//! and K times with OTEL_SDK_DISABLED=true, alternately, the console and the JSON log file off in
//! both, each run with a fresh state directory (so no run replays another's transactions). With
//! `--together`, the two runs of each pair run at the same time instead: on a small machine the
//! backends' own work (the collector, Jaeger, VictoriaLogs, Prometheus taking the run's telemetry)
//! slows whatever shares their CPUs, and alternating puts that load on the runs with telemetry
//! only; together, both runs of a pair meet the same load and the same moment of the machine. For each run it
//! takes the CPU (user + system) of the bot and of the inventory API it starts: the bot is left
//! unreaped once it exits, so /proc still holds its own CPU time and that of the API it waited
//! for. Then the medians on and off, their ratio, the extra CPU per transaction and the wall
//! time ratio. A stack of its own (state under `$INV_STACK_STATE/run-cost`, emptied first) comes
//! up for it and goes down after it, failed or not.
//!
//! With `--instructions`, one run on and one off (2,000 rows unless `--rows` says) run under
//! valgrind's callgrind instead, which counts the instructions each process executes: a figure
//! that a busy, shared machine does not move, as CPU time it does. It leaves out what the
//! instructions wait for (cache misses, the kernel), so it complements the CPU ratio rather
//! than replacing it. The callgrind files stay in the run directories for callgrind_annotate.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bot::{self, Profile};
use crate::stack::{self, Ctx, ProcStat, Topology, url};

/// What to run: rows of generated input, and how many on/off pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    rows: u64,
    pairs: u64,
    together: bool,
    /// Count instructions under callgrind (one run on, one off) instead of timing.
    instructions: bool,
}

/// Rows of an `--instructions` run unless `--rows` says: callgrind runs some 50 times slower.
const INSTRUCTION_ROWS: u64 = 2_000;

impl Options {
    const DEFAULT: Self = Self {
        rows: 20_000,
        pairs: 3,
        together: false,
        instructions: false,
    };

    fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Self::DEFAULT;
        let mut rows = None;
        let mut pairs = None;
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let target = match flag.as_str() {
                "--rows" => &mut rows,
                "--pairs" => &mut pairs,
                "--together" => {
                    opts.together = true;
                    continue;
                }
                "--instructions" => {
                    opts.instructions = true;
                    continue;
                }
                other => bail!(
                    "run-cost takes --rows N, --pairs K, --together and --instructions, not {other:?}"
                ),
            };
            *target = Some(
                args.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .with_context(|| format!("{flag} needs a whole number above 0"))?,
            );
        }
        if opts.instructions {
            if pairs.is_some() || opts.together {
                bail!("--instructions counts one run on and one off: it takes --rows only");
            }
            opts.pairs = 1;
            opts.rows = INSTRUCTION_ROWS;
        }
        opts.rows = rows.unwrap_or(opts.rows);
        opts.pairs = pairs.unwrap_or(opts.pairs);
        Ok(opts)
    }

    /// How long one run may take before it is killed: generous for a slow, shared machine.
    fn run_deadline(self) -> Duration {
        let per_row = if self.instructions { 500 } else { 10 };
        Duration::from_secs(120) + Duration::from_millis(per_row * self.rows)
    }
}

pub(crate) fn run_cost(root: &Path, args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    if opts.instructions {
        Command::new(VALGRIND)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .context("--instructions needs valgrind (Debian: apt-get install valgrind)")?;
    }
    let invbot = bot::build_with(root, Profile::Release)?;
    let mut ctx = Ctx::new(root)?;
    ctx.topology = Topology::Single;
    // A stack of its own, from empty: a measurement sends millions of spans, which would stay in
    // the usual stack's Jaeger (past its memory limit, it refuses what later runs send) and in
    // its collector's queue; and earlier data must not slow the backends of these runs.
    ctx.state = ctx.state.join("run-cost");
    let _ = fs::remove_dir_all(&ctx.state);
    stack::with_stack(&ctx, "run-cost", || measure(&ctx, &invbot, opts))
}

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    telemetry: bool,
    wall_s: f64,
    bot_cpu_s: f64,
    api_cpu_s: f64,
    /// Rows the run read (applied + failed + rejected), from its summary.
    rows: u64,
    /// The summary's telemetry line.
    telemetry_line: String,
    /// With `--instructions`: what the bot and the API executed.
    instructions: Option<Instructions>,
}

/// Instructions the bot and its API executed, from their callgrind files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instructions {
    bot: u64,
    api: u64,
}

impl Run {
    fn cpu_s(&self) -> f64 {
        self.bot_cpu_s + self.api_cpu_s
    }
}

fn measure(ctx: &Ctx, invbot: &Path, opts: Options) -> Result<()> {
    let dir = ctx.state.join("runs");
    fs::create_dir_all(&dir)?;
    let input = dir.join("input.csv");
    bot::generate(
        invbot,
        &input,
        &["--rows", &opts.rows.to_string(), "--seed", "5"],
    )?;
    eprintln!(
        "xtask: run-cost: {} rows, {} runs with telemetry on and {} off, {}",
        opts.rows,
        opts.pairs,
        opts.pairs,
        if opts.instructions {
            "under callgrind"
        } else if opts.together {
            "each pair at the same time"
        } else {
            "alternating"
        }
    );
    let mut runs = Vec::new();
    for pair in 0..opts.pairs {
        let start = |telemetry: bool| {
            let n = 2 * pair + u64::from(!telemetry);
            let run_dir = dir.join(format!("run-{n}"));
            start_run(invbot, &input, &run_dir, telemetry, opts.instructions)
        };
        let pair_runs = if opts.together {
            let both = [start(true)?, start(false)?];
            finish_runs(both, opts)?
        } else {
            let on = finish_runs([start(true)?], opts)?;
            let off = finish_runs([start(false)?], opts)?;
            on.into_iter().chain(off).collect()
        };
        for run in pair_runs {
            eprintln!(
                "xtask: run-cost: run {} (telemetry {}): {:.2} s CPU, {:.2} s wall",
                runs.len() + 1,
                on_off(run.telemetry),
                run.cpu_s(),
                run.wall_s
            );
            runs.push(run);
        }
    }
    // Under callgrind, CPU time is valgrind's: only the counts mean something.
    if opts.instructions {
        print!("{}{}", table(&runs), instruction_report(&runs));
    } else {
        print!("{}", report(&runs));
    }
    Ok(())
}

fn on_off(telemetry: bool) -> &'static str {
    if telemetry { "on" } else { "off" }
}

/// An `invbot run` started, its state and output under `dir`.
struct Started {
    child: Child,
    telemetry: bool,
    start: Instant,
    dir: PathBuf,
}

/// Where a run in `dir` prints its JSON summary, and its errors.
fn summary_file(dir: &Path) -> PathBuf {
    dir.join("summary.json")
}

fn errors_file(dir: &Path) -> PathBuf {
    dir.join("stderr.log")
}

const VALGRIND: &str = "valgrind";

/// Where callgrind writes a process's counts in a run's `dir` (`%p`: the pid).
const CALLGRIND_FILES: &str = "callgrind.out.";

/// Starts one `invbot run` of `input` with telemetry on or off, under callgrind if `counted`
/// (the API it starts too).
fn start_run(
    invbot: &Path,
    input: &Path,
    dir: &Path,
    telemetry: bool,
    counted: bool,
) -> Result<Started> {
    fs::create_dir_all(dir)?;
    let start = Instant::now();
    let mut command = if counted {
        let mut c = Command::new(VALGRIND);
        c.args(["--tool=callgrind", "--trace-children=yes"])
            .arg(format!(
                "--callgrind-out-file={}/{CALLGRIND_FILES}%p",
                dir.display()
            ))
            .arg(invbot);
        c
    } else {
        Command::new(invbot)
    };
    let child = command
        .args(["run", "--json", "--no-progress", "--input"])
        .arg(input)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--otlp-endpoint", url::COLLECTOR_OTLP])
        .args(["--environment", "run-cost"])
        .env("OTEL_SDK_DISABLED", (!telemetry).to_string())
        .env("INV_LOG_FILE", "off")
        .env("INV_LOG_CONSOLE", "false")
        .env("INV_METRICS_ADDR", "off")
        .stdin(Stdio::null())
        .stdout(fs::File::create(summary_file(dir))?)
        .stderr(fs::File::create(errors_file(dir))?)
        .spawn()
        .context("cannot run invbot")?;
    Ok(Started {
        child,
        telemetry,
        start,
        dir: dir.to_owned(),
    })
}

/// Waits for the runs to exit, each left unreaped until then (see [`ProcStat`]), and reads their
/// figures; a run past the deadline is killed, and so are the others.
fn finish_runs<const N: usize>(mut runs: [Started; N], opts: Options) -> Result<Vec<Run>> {
    let mut exited: [Option<(ProcStat, f64)>; N] = [const { None }; N];
    let deadline = opts.run_deadline();
    while exited.iter().any(Option::is_none) {
        let mut late = None;
        for (run, done) in runs.iter().zip(&mut exited) {
            if done.is_some() {
                continue;
            }
            let stat = ProcStat::of(run.child.id())?;
            if stat.state == 'Z' {
                *done = Some((stat, run.start.elapsed().as_secs_f64()));
            } else if run.start.elapsed() > deadline {
                late = Some(errors_file(&run.dir));
            }
        }
        if let Some(stderr) = late {
            for run in &mut runs {
                let _ = run.child.kill();
                let _ = run.child.wait();
            }
            bail!(
                "invbot run did not finish within {deadline:?}; its errors: {}",
                stderr.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    runs.into_iter()
        .zip(exited)
        .map(|(run, done)| {
            let (stat, wall_s) = done.expect("every run exited");
            read_run(run, &stat, wall_s)
        })
        .collect()
}

/// Reaps `run` and reads its figures: its CPU and its API's from `stat`, the rows from its
/// summary.
fn read_run(mut run: Started, stat: &ProcStat, wall_s: f64) -> Result<Run> {
    let status = run.child.wait().context("cannot wait for invbot")?;
    // 0: all applied; 3: some rows failed or were rejected.
    if !matches!(status.code(), Some(0 | 3)) {
        bail!(
            "invbot run failed ({status}): {}",
            fs::read_to_string(errors_file(&run.dir)).unwrap_or_default()
        );
    }
    let stdout = summary_file(&run.dir);
    let summary: Value = serde_json::from_slice(&fs::read(&stdout)?)
        .with_context(|| format!("invbot printed no JSON summary in {}", stdout.display()))?;
    let rows = summary["rows_read"]
        .as_u64()
        .context("the summary has no rows_read")?;
    if stat.children_cpu_s == 0.0 {
        eprintln!(
            "xtask: run-cost: warning: no CPU time of the API process: the bot did not wait for it"
        );
    }
    // The run's database is no longer needed, and the next run starts without it anyway.
    let _ = fs::remove_dir_all(run.dir.join("state"));
    Ok(Run {
        telemetry: run.telemetry,
        wall_s,
        bot_cpu_s: stat.cpu_s,
        api_cpu_s: stat.children_cpu_s,
        rows,
        telemetry_line: summary["telemetry"].as_str().unwrap_or_default().to_owned(),
        instructions: counted_instructions(&run.dir)?,
    })
}

/// The instructions in the callgrind files of the run in `dir`, if it ran under callgrind: the
/// API's file is the one whose command is `serve-api`.
fn counted_instructions(dir: &Path) -> Result<Option<Instructions>> {
    let mut found = Instructions { bot: 0, api: 0 };
    let mut any = false;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_counts = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(CALLGRIND_FILES));
        if !is_counts {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        let (cmd, total) = callgrind_totals(&text)
            .with_context(|| format!("no command or totals in {}", path.display()))?;
        *if cmd.contains(" serve-api ") {
            &mut found.api
        } else {
            &mut found.bot
        } += total;
        any = true;
    }
    Ok(any.then_some(found))
}

/// The `cmd:` and `totals:` lines of a callgrind file.
fn callgrind_totals(text: &str) -> Option<(&str, u64)> {
    let cmd = text.lines().find_map(|l| l.strip_prefix("cmd:"))?;
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((cmd, total))
}

/// The instructions per transaction on and off, their ratio and the difference.
fn instruction_report(runs: &[Run]) -> String {
    let find = |on: bool| {
        runs.iter()
            .find(|r| r.telemetry == on)
            .and_then(|r| Some((r.instructions?, r.rows.max(1) as f64)))
    };
    let (Some((on, rows_on)), Some((off, rows_off))) = (find(true), find(false)) else {
        return "\nno callgrind counts found\n".to_owned();
    };
    let per = |n: u64, rows: f64| n as f64 / rows;
    let (bot_on, bot_off) = (per(on.bot, rows_on), per(off.bot, rows_off));
    let (api_on, api_off) = (per(on.api, rows_on), per(off.api, rows_off));
    let (all_on, all_off) = (bot_on + api_on, bot_off + api_off);
    format!(
        "\ninstructions per transaction, on vs off: {all_on:.0} vs {all_off:.0} (bot {bot_on:.0} \
         vs {bot_off:.0}, API {api_on:.0} vs {api_off:.0}): {:.3}x, {:.0} more per transaction\n",
        all_on / all_off,
        all_on - all_off,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The per-run table, then the medians on and off and what they make.
fn report(runs: &[Run]) -> String {
    let mut out = table(runs);
    let of = |on: bool, figure: fn(&Run) -> f64| {
        median(
            runs.iter()
                .filter(|r| r.telemetry == on)
                .map(figure)
                .collect(),
        )
    };
    let rows = median(runs.iter().map(|r| r.rows as f64).collect());
    let (cpu_on, cpu_off) = (of(true, Run::cpu_s), of(false, Run::cpu_s));
    let (wall_on, wall_off) = (of(true, |r| r.wall_s), of(false, |r| r.wall_s));
    out.push_str(&format!(
        "\nmedians, on vs off: CPU {cpu_on:.2} s vs {cpu_off:.2} s (bot {:.2} vs {:.2}, API {:.2} \
         vs {:.2}): {:.2}x, {:.0} µs more CPU per transaction ({rows:.0} rows); wall {wall_on:.2} s \
         vs {wall_off:.2} s: {:.2}x\n",
        of(true, |r| r.bot_cpu_s),
        of(false, |r| r.bot_cpu_s),
        of(true, |r| r.api_cpu_s),
        of(false, |r| r.api_cpu_s),
        cpu_on / cpu_off,
        (cpu_on - cpu_off) / rows * 1e6,
        wall_on / wall_off,
    ));
    out
}

/// One line per run: its CPU, wall time, rows and the summary's telemetry line.
fn table(runs: &[Run]) -> String {
    let mut out = format!(
        "\n{:>3}  {:<9} {:>7} {:>9} {:>9} {:>7} {:>7}  summary's telemetry line\n",
        "run", "telemetry", "wall s", "bot CPU s", "API CPU s", "CPU s", "rows"
    );
    for (n, r) in runs.iter().enumerate() {
        out.push_str(&format!(
            "{:>3}  {:<9} {:>7.2} {:>9.2} {:>9.2} {:>7.2} {:>7}  {}\n",
            n + 1,
            on_off(r.telemetry),
            r.wall_s,
            r.bot_cpu_s,
            r.api_cpu_s,
            r.cpu_s(),
            r.rows,
            r.telemetry_line
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_default_and_take_every_flag() {
        assert_eq!(Options::parse(&[]).expect("defaults"), Options::DEFAULT);
        assert_eq!(
            Options::parse(&args(&["--pairs", "5", "--together", "--rows", "1000"]))
                .expect("every flag"),
            Options {
                rows: 1000,
                pairs: 5,
                together: true,
                instructions: false,
            }
        );
        let counted = |list: &[&str]| Options::parse(&args(list)).expect("--instructions");
        assert_eq!(
            counted(&["--instructions"]),
            Options {
                rows: INSTRUCTION_ROWS,
                pairs: 1,
                together: false,
                instructions: true,
            }
        );
        assert_eq!(counted(&["--rows", "500", "--instructions"]).rows, 500);
        for bad in [
            &["--rows"][..],
            &["--rows", "0"],
            &["--pairs", "many"],
            &["--topology", "gateway"],
            &["--instructions", "--pairs", "2"],
            &["--together", "--instructions"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn report_gives_the_ratio_and_the_extra_cpu_per_transaction() {
        let run = |telemetry, bot_cpu_s, wall_s| Run {
            telemetry,
            wall_s,
            bot_cpu_s,
            api_cpu_s: 1.0,
            rows: 10_000,
            telemetry_line: String::new(),
            instructions: None,
        };
        let runs = [
            run(true, 3.0, 6.0),
            run(false, 1.0, 4.0),
            run(true, 5.0, 6.0),
            run(false, 1.0, 4.0),
        ];
        let text = report(&runs);
        // On: median CPU (4 + 6) / 2 = 5 s; off: 2 s; 3 s over 10,000 rows = 300 µs each.
        assert!(
            text.contains("CPU 5.00 s vs 2.00 s (bot 4.00 vs 1.00, API 1.00 vs 1.00): 2.50x"),
            "{text}"
        );
        assert!(text.contains("300 µs more CPU per transaction"), "{text}");
        assert!(text.contains("wall 6.00 s vs 4.00 s: 1.50x"), "{text}");
    }

    #[test]
    fn callgrind_totals_name_the_command_and_count() {
        let file = "version: 1\ncmd:  /x/invbot serve-api --listen 127.0.0.1:0 --db d\n\
                    events: Ir\nfn=(1) main\n5 10\ntotals: 123456\n";
        assert_eq!(
            callgrind_totals(file),
            Some(("  /x/invbot serve-api --listen 127.0.0.1:0 --db d", 123_456))
        );
        assert_eq!(callgrind_totals("cmd: x\nevents: Ir\n"), None);
    }

    #[test]
    fn instruction_report_gives_the_ratio_and_the_extra_per_transaction() {
        let run = |telemetry, bot, api| Run {
            telemetry,
            wall_s: 1.0,
            bot_cpu_s: 1.0,
            api_cpu_s: 1.0,
            rows: 1_000,
            telemetry_line: String::new(),
            instructions: Some(Instructions { bot, api }),
        };
        let text = instruction_report(&[run(true, 150_000, 225_000), run(false, 100_000, 150_000)]);
        // On: 150 + 225 = 375 a transaction; off: 100 + 150 = 250.
        assert!(
            text.contains("375 vs 250 (bot 150 vs 100, API 225 vs 150): 1.500x, 125 more"),
            "{text}"
        );
    }
}
