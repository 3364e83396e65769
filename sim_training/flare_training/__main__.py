from flare_training.cli import main

main()
