from syngraph.cli import main

main()
