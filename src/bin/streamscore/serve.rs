//! `streamscore serve`: flags over a config file, then the server until a signal.

use std::io::Write;
use std::path::PathBuf;

use streamscore::Error;
use streamscore::serve::{ServeConfig, Server};

/// `streamscore serve` flags. A flag overrides the config file's value.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A serve config (TOML): model, features, runtime, HTTP; see the README.
    #[arg(long, required_unless_present = "model")]
    pub config: Option<PathBuf>,
    /// A model file to serve (no config file needed).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The name clients address the model by (default `model`).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to listen for HTTP, ADDRESS:PORT (port 0 picks a free one).
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Backend spec: auto, cpu, gpu, onnx, reference, or a fallback list such as `gpu,cpu`.
    #[arg(long)]
    pub backend: Option<String>,
}

/// Starts the server, prints `listening on http://ADDR` once it answers, and serves until
/// SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), Error> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::from_path(path)?,
        None => ServeConfig::for_model(args.model.as_ref().expect("clap: --model or --config")),
    };
    if let (Some(model), Some(_)) = (&args.model, &args.config) {
        config.model.path = Some(model.clone());
        config.model.dir = None;
        config.model.version = None;
    }
    if let Some(name) = args.name {
        config.model.name = name;
    }
    if let Some(addr) = args.http {
        config.http.address = addr;
    }
    if let Some(backend) = args.backend {
        config.model.backend = backend;
    }
    let server = Server::start(&config)?;
    let rt = server.runtime();
    eprintln!(
        "streamscore serve: model `{}` version {} on {}",
        config.model.name,
        rt.live_version(),
        rt.backend_name()
    );
    server.run_until_signal(|server| {
        // The one stdout line scripts wait for (stable), once signals drain the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{}", server.local_addr());
        let _ = out.flush();
    })?;
    eprintln!("streamscore serve: drained, exiting");
    Ok(())
}
