"""`python -m DICOMBrowser` is the same as the `dicombrowser` console script."""
from DICOMBrowser.DICOMBrowserLib.cli import main

if __name__ == "__main__":
    main()
