from dom0.cli.main import main

raise SystemExit(main())
