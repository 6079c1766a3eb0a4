"""The names of the data paths, for the command line's ``--engine`` choices: without
``connect``'s typing and the Rust extension it loads, so that building the parser loads neither."""

ENGINES = ("rust", "python")
