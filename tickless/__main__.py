from tickless.cli import main

main()
