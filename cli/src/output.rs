//! Printing a command's result: `--output`'s formats, the operation's JSON or a text
//! for people, written to stdout.

use clap::ValueEnum;
use serde::Serialize;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Prints an operation's output: the JSON itself (as the server sent it, when `value` is
/// the answer's `Value`), or `text` for people.
pub fn show<T: Serialize + ?Sized>(output: Output, value: &T, text: impl FnOnce(&T) -> String) {
    match output {
        Output::Json => print_line(&pretty(value)),
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

/// `value` as indented JSON.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("API shapes serialize")
}
