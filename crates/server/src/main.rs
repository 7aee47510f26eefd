//! `hookrelay`: a durable, signed webhook delivery engine.
//!
//! The binary stays thin: parse the command line, load configuration, and
//! hand over to [`run::serve`] (or the `receive` debugging receiver).

mod backend;
mod config;
mod conn;
mod dev;
mod engine;
mod http;
mod listen;
mod notify;
mod receive;
mod run;
mod shutdown;
mod supervise;
mod telemetry;
mod tls;

use clap::{Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

/// jemalloc instead of glibc's malloc: every delivery allocates and frees
/// dozens of small buffers on two runtime threads, and glibc's malloc and
/// free were a fifth to a quarter of the server's CPU in the profiles, more
/// as the heap of queued deliveries grew (docs/benchmarks.md: e2e 15-19k ->
/// 21-24k deliveries/s, a backlog's drain 8.0k -> 11.5k/s, RSS +0-35 %).
/// mimalloc was measured too and doubled the RSS. Building without the
/// default `jemalloc` feature keeps the system allocator, for heap profilers
/// that hook malloc (heaptrack, valgrind's massif).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "hookrelay",
    version,
    about = "A durable webhook delivery engine: gRPC ingest into a sled log, signed HTTP deliveries with retries, a REST management API.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (REST API, gRPC ingest, scheduler and delivery workers).
    Serve {
        /// TOML configuration file (see deploy/hookrelay.toml). Without it,
        /// defaults and HOOKRELAY_<SECTION>__<KEY> environment variables apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory; overrides store.path.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Local development: allow http:// and private targets, create a dev
        /// organization, app, device token and ingest key, and print them with
        /// ready-to-paste commands.
        #[arg(long)]
        dev: bool,
    },
    /// Check a configuration file and report every problem at once.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Run a debugging receiver that prints each delivery and verifies its
    /// signatures.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// The webhook's secret, to verify both signatures.
        #[arg(long)]
        secret: Option<String>,
        /// HTTP status to answer (e.g. 500 to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { file } => match config::load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(())
            }
            Err(e) => Err(e),
        },
        Command::Serve {
            config,
            data_dir,
            dev,
        } => config::load(config.as_deref()).and_then(|mut cfg| {
            if let Some(dir) = data_dir {
                cfg.store.path = dir;
            }
            let logs = telemetry::init_logs(&cfg.log);
            hookrelay_sled::failpoints_from_env().map_err(anyhow::Error::msg)?;
            runtime()?.block_on(run::serve(cfg, dev, config, logs))
        }),
        Command::Receive {
            listen,
            secret,
            status,
        } => runtime().and_then(|rt| rt.block_on(receive::run(listen, secret, status))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
