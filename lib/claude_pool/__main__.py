from claude_pool.cli import main

main()
