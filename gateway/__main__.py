from gateway.cli import main

if __name__ == "__main__":  # not when a serving process is spawned (it imports this module as `__mp_main__`)
    main()
