//! The `wschat` binary: parse the command line, run the command, turn errors into one line + exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use wschat::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and exit 0; usage errors exit 2 (clap's own rendering).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // `serve --json` is for machines: its log lines are JSON too.
    let json_logs = cli.global.log_format == wschat::cli::LogFormat::Json
        || matches!(&cli.command, Command::Serve(args) if args.json);
    init_tracing(&cli.global, json_logs);
    let result = match &cli.command {
        Command::Serve(args) => wschat::serve::run(args, &cli.global),
        Command::Send(args) => wschat::send::run(args, &cli.global),
        Command::Bench(args) => wschat::bench::run(args, &cli.global),
        Command::Decode(args) => wschat::decode::run(args, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            // One line: the outermost context first, then its causes.
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            eprintln!("wschat: error: {}", chain.join(": "));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(global: &wschat::cli::Global, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,wschat=info",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_ansi(false).init();
    } else {
        let ansi = global.use_color(std::io::stderr().is_terminal());
        builder.with_ansi(ansi).init();
    }
}
