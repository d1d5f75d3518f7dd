from vramscribe.cli import main

main()
