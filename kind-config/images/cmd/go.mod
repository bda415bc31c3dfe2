// Small programs for the images made by kind-config/images.sh.
module multiregion.local/kind/cmd

go 1.25.0
