"""The Typer CLI: one module per command group; parses, calls the library, prints, maps errors."""
