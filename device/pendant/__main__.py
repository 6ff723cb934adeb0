from pendant.cli import main

raise SystemExit(main())
