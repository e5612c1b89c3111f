//! The emulator's SQL front end: a byte-based lexer and a recursive-descent parser producing
//! the statement tree in [`ast`].

pub mod ast;
pub mod keywords;
pub mod lexer;
pub mod parser;

pub use parser::parse;
