"""`python -m apixx_emulator`: the same as the `apixx-emulator` command."""

from apixx_emulator.launch import main

main()
