from pendant.app.cli import main

raise SystemExit(main())
