//! Input rows: CSV (by name and positional) and .npy through `read_rows` and the streaming
//! reader, for a model of eight features; nothing may panic, and both readers agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamscore::io::{Columns, RowStream, read_rows};

fuzz_target!(|data: &[u8]| {
    let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    for columns in [Columns::ByName, Columns::Positional] {
        let whole = read_rows(data, columns, &names, "fuzz");
        let Ok(mut stream) =
            RowStream::new(Box::new(std::io::Cursor::new(data.to_vec())), columns, &names, "fuzz")
        else {
            assert!(whole.is_err(), "the streaming reader refused what read_rows took");
            continue;
        };
        let mut rows = 0;
        let mut failed = false;
        loop {
            match stream.next_chunk(3) {
                Ok(Some(batch)) => rows += batch.n_rows(),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if let (Ok(batch), false) = (&whole, failed) {
            assert_eq!(batch.n_rows(), rows);
        }
    }
});
