//! `streamscore serve`: flags over a config file, then the server until a signal.

use std::io::Write;
use std::path::PathBuf;

use streamscore::Error;
use streamscore::serve::{CheckpointConfig, JsonlConfig, ServeConfig, Server};

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
    /// A feature spec (TOML) run before the model: events then carry keys, times and fields.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Keep the feature state in checkpoints in this directory (every 30 s and on shutdown)
    /// and restore it at start.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Also read events as line-delimited JSON from this file (`-`: stdin); serve exits at
    /// its end.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where the input's answers go, one line per input line (`-`: stdout, the default).
    #[arg(long, value_name = "FILE", requires = "input")]
    pub output: Option<PathBuf>,
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
    if let Some(spec) = args.features {
        config.model.features = Some(spec);
    }
    if let Some(dir) = args.checkpoint {
        match &mut config.checkpoint {
            Some(c) => c.dir = dir,
            None => config.checkpoint = Some(CheckpointConfig::new(dir)),
        }
    }
    if let Some(input) = args.input {
        let output = args.output.unwrap_or_else(|| "-".into());
        match &mut config.jsonl {
            Some(j) => (j.input, j.output) = (input, output),
            None => config.jsonl = Some(JsonlConfig::new(input, output)),
        }
    }
    config.validate()?;
    // Answers on stdout keep it to themselves: the ready line goes to stderr then.
    let stdout_answers = config.jsonl.as_ref().is_some_and(JsonlConfig::writes_stdout);
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
        let line = format!("listening on http://{}", server.local_addr());
        if stdout_answers {
            eprintln!("{line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    })?;
    eprintln!("streamscore serve: drained, exiting");
    Ok(())
}
