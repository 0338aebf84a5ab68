#!/usr/bin/env bash
# Deletes a gpulab artifacts bucket for good: every object version, every delete marker, then the
# bucket. `aws s3 rb --force` is not enough for a versioned bucket: old versions stay behind and
# the bucket delete fails with BucketNotEmpty. Asks you to type the bucket name first.
# Usage: scripts/delete-bucket.sh BUCKET
set -euo pipefail

bucket=${1:-}
if [[ -z $bucket ]]; then
  echo "usage: scripts/delete-bucket.sh BUCKET (make destroy prints the name)" >&2
  exit 2
fi
read -r -p "Delete s3://$bucket and every version of every file in it, for good? Type the bucket name: " answer
if [[ $answer != "$bucket" ]]; then
  echo "gpulab: not deleted (the name did not match)." >&2
  exit 1
fi

deleted=0
for kind in Versions DeleteMarkers; do
  previous=
  while :; do
    batch=$(aws s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
      --query "{Objects: ${kind}[].{Key: Key, VersionId: VersionId}, Quiet: \`true\`}")
    [[ $batch == *'"Key"'* ]] || break
    if [[ $batch == "$previous" ]]; then
      echo "gpulab: the same $kind came back after deleting them; check s3:DeleteObjectVersion permission" >&2
      exit 1
    fi
    aws s3api delete-objects --bucket "$bucket" --delete "$batch" >/dev/null
    deleted=$((deleted + $(grep -o '"Key"' <<<"$batch" | wc -l)))
    previous=$batch
  done
done
aws s3api delete-bucket --bucket "$bucket"
echo "gpulab: deleted s3://$bucket ($deleted object versions and delete markers)."
