//! The official Engine.IO v4 and Socket.IO v5 test-suites' fixture server, built on the library's
//! relay (`wschat::serve::fixture`): port 3000, pingInterval 300 ms, pingTimeout 200 ms,
//! connectTimeout 1000 ms, maxPayload 1 MB; an Engine.IO echo server at `/engine.io/` and
//! Socket.IO at `/socket.io/` with the namespaces `/` and `/custom`.
//!
//! Run: `cargo run --example conformance [-- --port 3000]`, then `npm ci && npx mocha
//! test-suite.js` in each suite's folder (docs/socketio-protocol.md section 4).

use std::net::SocketAddr;
use std::process::ExitCode;

use wschat::serve::fixture::{suite_config, suite_server};
use wschat::serve::server::ServerBuilder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let port = match args.iter().position(|a| a == "--port") {
        None => 3000,
        Some(i) => match args.get(i + 1).and_then(|p| p.parse::<u16>().ok()) {
            Some(p) => p,
            None => {
                eprintln!("conformance: error: --port needs a port number");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance: error: while starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = match suite_server(ServerBuilder::new(suite_config())).bind(addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("conformance: error: while listening on {addr}: {e}");
                return ExitCode::from(2);
            }
        };
        let bound = server.local_addr().unwrap_or(addr);
        println!("conformance fixture listening on http://{bound}/ (/engine.io/ echo, /socket.io/ with / and /custom)");
        server.run(wschat::serve::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
