//! The bench's validated configuration: command-line flags checked once, with one clear error each.

use std::net::IpAddr;
use std::time::Duration;

use crate::cli::{BenchArgs, TransportChoice};

use super::payload::ID_LEN;

/// What kind of load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Clients join rooms and send `send_message`; receivers time `receive_message`.
    Chat,
    /// Connect, join and hold: connect times, connect rate, server memory.
    Idle,
    /// Plain WebSocket echo: each client times the echo of its own frames.
    Raw,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Idle => "idle",
            Mode::Raw => "raw",
        }
    }
}

/// Bad flag combinations, each a one-line message naming the flag.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--clients must be at least 1")]
    NoClients,
    #[error("--rooms must be at least 1")]
    NoRooms,
    #[error(
        "--rooms {rooms} is more than --clients {clients}: every room needs at least one client"
    )]
    MoreRoomsThanClients { rooms: usize, clients: usize },
    #[error("--duration must be greater than zero")]
    ZeroDuration,
    #[error(
        "--size {size} is too small: each message carries a {min}-byte id, so --size must be at least {min}"
    )]
    SizeTooSmall { size: usize, min: usize },
    #[error("--size {size} is too large (at most {max} bytes)")]
    SizeTooLarge { size: usize, max: usize },
    #[error("--connect-concurrency must be at least 1")]
    NoConcurrency,
    #[error("--threads must be between 1 and 1024")]
    BadThreads,
    #[error("--{flag} cannot be combined with --{other}")]
    Conflict {
        flag: &'static str,
        other: &'static str,
    },
    #[error("--namespace `{0}` must start with `/`")]
    BadNamespace(String),
    #[error("--rate {rate}/s per client is more than 1,000,000/s")]
    RateTooHigh { rate: f64 },
    #[error("--churn must be greater than zero")]
    ZeroChurn,
    #[error("--transport {0} is not supported with --raw (plain WebSocket only)")]
    RawTransport(&'static str),
    #[error("--max-p99 needs messages; it cannot be used with --idle")]
    IdleP99,
}

/// Largest `--size`.
pub const MAX_SIZE: usize = 16 << 20;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub clients: usize,
    pub rooms: usize,
    /// Messages per second per client.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub ramp: Duration,
    pub grace: Duration,
    pub size: usize,
    pub transport: TransportChoice,
    pub ack: bool,
    /// Clients disconnected and reconnected per second.
    pub churn: Option<f64>,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub threads: usize,
    pub namespace: String,
    pub url: Option<String>,
    pub sources: Vec<IpAddr>,
    pub json: bool,
    pub html: Option<std::path::PathBuf>,
    pub max_p99: Option<Duration>,
    /// End latency at the kernel's receive timestamp (else at the generator's read).
    pub rx_timestamps: bool,
    /// Drive joined connections from one loop per worker where possible (else a task each).
    pub shared_loop: bool,
    pub max_loss: Option<u64>,
    pub strict: bool,
}

/// Default rooms: 50, but at most half the clients (rooms of two), at least one.
pub fn default_rooms(clients: usize) -> usize {
    (clients / 2).clamp(1, 50)
}

impl Config {
    pub fn from_args(a: &BenchArgs) -> Result<Config, ConfigError> {
        let mode = match (a.idle, a.raw) {
            (true, true) => {
                return Err(ConfigError::Conflict {
                    flag: "idle",
                    other: "raw",
                });
            }
            (true, false) => Mode::Idle,
            (false, true) => Mode::Raw,
            (false, false) => Mode::Chat,
        };
        if a.clients == 0 {
            return Err(ConfigError::NoClients);
        }
        let rooms = a.rooms.unwrap_or_else(|| default_rooms(a.clients));
        if rooms == 0 {
            return Err(ConfigError::NoRooms);
        }
        if rooms > a.clients && mode != Mode::Raw {
            return Err(ConfigError::MoreRoomsThanClients {
                rooms,
                clients: a.clients,
            });
        }
        if a.duration.is_zero() {
            return Err(ConfigError::ZeroDuration);
        }
        if mode != Mode::Idle {
            if a.size < ID_LEN {
                return Err(ConfigError::SizeTooSmall {
                    size: a.size,
                    min: ID_LEN,
                });
            }
            if a.size > MAX_SIZE {
                return Err(ConfigError::SizeTooLarge {
                    size: a.size,
                    max: MAX_SIZE,
                });
            }
        }
        if a.rate > 1_000_000.0 {
            return Err(ConfigError::RateTooHigh { rate: a.rate });
        }
        if a.connect_concurrency == 0 {
            return Err(ConfigError::NoConcurrency);
        }
        let threads = match a.threads {
            Some(t) if t == 0 || t > 1024 => return Err(ConfigError::BadThreads),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if !a.namespace.starts_with('/') {
            return Err(ConfigError::BadNamespace(a.namespace.clone()));
        }
        match mode {
            Mode::Raw => {
                if a.ack {
                    return Err(ConfigError::Conflict {
                        flag: "ack",
                        other: "raw",
                    });
                }
                if a.churn.is_some() {
                    return Err(ConfigError::Conflict {
                        flag: "churn",
                        other: "raw",
                    });
                }
                match a.transport {
                    TransportChoice::Websocket => {}
                    TransportChoice::Polling => return Err(ConfigError::RawTransport("polling")),
                    TransportChoice::Upgrade => return Err(ConfigError::RawTransport("upgrade")),
                }
            }
            Mode::Idle => {
                if a.ack {
                    return Err(ConfigError::Conflict {
                        flag: "ack",
                        other: "idle",
                    });
                }
                if a.churn.is_some() {
                    return Err(ConfigError::Conflict {
                        flag: "churn",
                        other: "idle",
                    });
                }
            }
            Mode::Chat => {}
        }
        if mode == Mode::Idle && a.max_p99.is_some() {
            return Err(ConfigError::IdleP99);
        }
        if let Some(c) = a.churn
            && c <= 0.0
        {
            return Err(ConfigError::ZeroChurn);
        }
        Ok(Config {
            mode,
            clients: a.clients,
            rooms: if mode == Mode::Raw { a.clients } else { rooms },
            rate: a.rate,
            duration: a.duration,
            warmup: a.warmup,
            ramp: a.ramp,
            grace: a.grace,
            size: a.size,
            transport: a.transport,
            ack: a.ack,
            churn: a.churn,
            connect_concurrency: a.connect_concurrency,
            connect_timeout: a.connect_timeout,
            threads,
            namespace: a.namespace.clone(),
            url: a.url.clone(),
            sources: a.sources.clone(),
            json: a.json,
            html: a.html.clone(),
            max_p99: a.max_p99,
            rx_timestamps: a.rx_clock == crate::cli::RxClock::Kernel,
            shared_loop: !a.task_per_connection,
            max_loss: a.max_loss,
            strict: a.strict,
        })
    }

    /// Clients per room (the first `clients % rooms` rooms have one more).
    pub fn room_size(&self, room: usize) -> usize {
        self.clients / self.rooms + usize::from(room < self.clients % self.rooms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["wschat", "bench"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).expect("clap accepts");
        match cli.command {
            Command::Bench(a) => Config::from_args(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_are_the_issue_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.clients, c.rooms, c.rate, c.size), (500, 50, 10.0, 64));
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.warmup, Duration::from_secs(5));
        assert_eq!(c.mode, Mode::Chat);
        assert_eq!(c.room_size(0), 10);
    }

    #[test]
    fn default_rooms_shrink_with_few_clients() {
        assert_eq!(parse(&["--clients", "10"]).unwrap().rooms, 5);
        assert_eq!(parse(&["--clients", "1"]).unwrap().rooms, 1);
    }

    #[test]
    fn bad_input_is_named() {
        let e = parse(&["--clients", "10", "--rooms", "50"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--rooms 50 is more than --clients 10: every room needs at least one client"
        );
        assert_eq!(
            parse(&["--clients", "0"]).unwrap_err(),
            ConfigError::NoClients
        );
        assert_eq!(
            parse(&["--duration", "0s"]).unwrap_err(),
            ConfigError::ZeroDuration
        );
        assert!(matches!(
            parse(&["--size", "8"]).unwrap_err(),
            ConfigError::SizeTooSmall { .. }
        ));
        assert!(matches!(
            parse(&["--idle", "--raw"]).unwrap_err(),
            ConfigError::Conflict { .. }
        ));
        assert!(matches!(
            parse(&["--raw", "--ack"]).unwrap_err(),
            ConfigError::Conflict { .. }
        ));
        assert!(matches!(
            parse(&["--namespace", "chat"]).unwrap_err(),
            ConfigError::BadNamespace(_)
        ));
        assert_eq!(
            parse(&["--threads", "0"]).unwrap_err(),
            ConfigError::BadThreads
        );
    }

    #[test]
    fn a_zero_rate_is_rejected_by_the_parser() {
        let e = Cli::try_parse_from(["wschat", "bench", "--rate", "0/s"]).unwrap_err();
        assert!(e.to_string().contains("must be greater than zero"), "{e}");
    }

    #[test]
    fn uneven_rooms_have_sizes_that_add_up() {
        let c = parse(&["--clients", "23", "--rooms", "5"]).unwrap();
        let sizes: Vec<usize> = (0..5).map(|r| c.room_size(r)).collect();
        assert_eq!(sizes, vec![5, 5, 5, 4, 4]);
        assert_eq!(sizes.iter().sum::<usize>(), 23);
    }
}
