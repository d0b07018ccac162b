"""Imported once by the fork server when it starts (its preload list): it dies with the run.

Its workers are its children and die with it in turn (``evalkit.workers``).
"""

from evalkit.workers import die_with_parent, leave_stopping_to_the_run

die_with_parent()
leave_stopping_to_the_run()
