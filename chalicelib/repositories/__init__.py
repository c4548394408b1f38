"""Where records live: one ``Repository`` interface, one module per backend."""
