"""``python -m cml_nb`` runs the CLI."""

from cml_nb.cli import main

main(prog_name="cml-nb")
