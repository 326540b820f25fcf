"""The compiler: .agent source -> syntax tree -> checked IR -> DAG, with diagnostics as data."""
