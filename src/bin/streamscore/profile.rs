//! `streamscore profile`: a training reference for the runtime's monitor.

use std::io::BufReader;
use std::path::PathBuf;

use clap::Args;
use streamscore::io::{Columns, RowStream};
use streamscore::monitor::reference::Reference;
use streamscore::{BackendSpec, Error, Lineage, Output, load_model};

/// `streamscore profile`'s flags.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The model the reference is for (its features are profiled, and its scores).
    #[arg(long)]
    model: PathBuf,
    /// Training rows: CSV (header matched to feature names) or .npy; `-` is stdin.
    #[arg(long)]
    input: String,
    /// Where to write the reference (JSON); `-` (the default) is stdout.
    #[arg(long, default_value = "-")]
    output: String,
}

/// Runs the command: reads every row, scores them with the fast CPU path, profiles each
/// feature and the score, and writes the reference.
pub fn run(args: &ProfileArgs) -> Result<(), Error> {
    let bytes = std::fs::read(&args.model).map_err(|e| Error::io(&args.model, e))?;
    let model = load_model(&args.model)?;
    let names = model.feature_names();
    let scorer = BackendSpec::default().select(model)?;
    if scorer.output_width(Output::Transformed) != 1 {
        return Err(Error::Config(format!(
            "profile: the model gives {} values per row; a reference profiles one score",
            scorer.output_width(Output::Transformed)
        )));
    }
    let reader: Box<dyn std::io::Read> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.input).map_err(|e| Error::io(&args.input, e))?)
    };
    let mut rows =
        RowStream::new(Box::new(BufReader::new(reader)), Columns::ByName, &names, &args.input)?;
    let mut columns: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
    let mut scores = Vec::new();
    while let Some(batch) = rows.next_chunk(65_536)? {
        let at = scores.len();
        scores.resize(at + batch.n_rows(), 0.0);
        scorer.score_batch(&batch, Output::Transformed, &mut scores[at..])?;
        for (f, column) in columns.iter_mut().enumerate() {
            column.extend_from_slice(batch.column(f));
        }
    }
    let n = scores.len();
    let values: Vec<f32> = columns.concat();
    let cols = streamscore::Columns::new(&values, n, names.len())?;
    let mut reference = Reference::of(&names, cols, &scores)?;
    reference.model_sha256 = Some(Lineage::sha256_of(&bytes));
    let json = reference.to_json() + "\n";
    if args.output == "-" {
        print!("{json}");
    } else {
        std::fs::write(&args.output, json).map_err(|e| Error::io(&args.output, e))?;
    }
    eprintln!("profiled {n} rows, {} features and the score", names.len());
    Ok(())
}
