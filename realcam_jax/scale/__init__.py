"""Scale-out: multi-host runtime (`multihost`), launch command builders (`launchers`) and the
computed full-size memory plan (`memory_plan`)."""
