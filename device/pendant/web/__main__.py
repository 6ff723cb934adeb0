from pendant.web.server import main

raise SystemExit(main())
