"""Command-line entry points (thin: ``get_args_parser()`` + ``main(args)`` over the library)."""
