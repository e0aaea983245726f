"""``python -m cxrwatch.clinical`` runs the clinical service until SIGTERM."""

from cxrwatch.clinical.service import main

main()
