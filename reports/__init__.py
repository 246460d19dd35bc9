"""The evaluation report: what evaluate.py measures, as functions with explicit
arguments that a notebook or another script can call (`sections`), on the data a
run names (`data.EvalData`), and the report's tables (`tables`) and plots (`plots`).
evaluate.py only parses flags, loads the model, calls these and writes the JSON.
The model package, mgnet_tf, does not import it."""

from reports.data import EvalData
from reports.plots import write_plots
from reports.sections import (
    attack_section,
    clean_section,
    corruption_section,
    images_section,
    pictures_section,
    write_pictures,
)
from reports.tables import format_tables

__all__ = [
    "EvalData",
    "attack_section",
    "clean_section",
    "corruption_section",
    "format_tables",
    "images_section",
    "pictures_section",
    "write_pictures",
    "write_plots",
]
