from aotcc.cli import run

run()
