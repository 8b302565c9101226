from bellman.cli import main

main()
