//! Printing a command's result: `--output`'s formats, the operation's JSON or a text
//! for people, written to stdout.

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Prints an operation's output: the JSON itself, or `text` for people.
pub fn show(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => {
            print_line(&serde_json::to_string_pretty(value).expect("JSON values print"))
        }
        Output::Text => {
            let text = text(value);
            if !text.is_empty() {
                print_line(&text);
            }
        }
    }
}

/// Prints a line to stdout. A reader that went away (`gantry list ... | head -1`) ends
/// the command quietly, as it does other Unix tools, rather than in a panic.
fn print_line(text: &str) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{text}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("gantry: writing the output: {error}");
        std::process::exit(1);
    }
}

pub fn lines(values: &Value) -> String {
    values
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
