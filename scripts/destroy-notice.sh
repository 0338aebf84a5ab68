#!/usr/bin/env bash
# `make destroy` calls this after `pulumi destroy`: says what is kept on purpose (the artifacts
# bucket, retained so results outlive the instance), how big it is, and the one command that
# deletes it for good.
# Usage: scripts/destroy-notice.sh STACK [BUCKET]   (BUCKET: the stack's artifactsBucket output,
# read before the destroy, since a destroyed stack has no outputs left)
set -euo pipefail

stack=${1:?usage: scripts/destroy-notice.sh STACK [BUCKET]}
bucket=${2:-}
if [[ -z $bucket ]]; then
  bucket=$(pulumi stack output artifactsBucket --stack "$stack" 2>/dev/null || true)
fi
if [[ -z $bucket ]]; then
  echo "gpulab: stack $stack names no artifacts bucket (never deployed?), so nothing of it is kept."
  exit 0
fi

# Versioned bucket: old versions cost storage too, so count them all, not just `aws s3 ls`.
# shellcheck disable=SC2016  # the backticks are JMESPath literals, not shell
query='[sum(Versions[].Size || `[]`), length(Versions || `[]`), length(DeleteMarkers || `[]`)]'
if counts=$(aws s3api list-object-versions --bucket "$bucket" --output text --query "$query" 2>/dev/null); then
  read -r bytes versions markers <<<"$counts"
  size=$(numfmt --to=iec-i --suffix=B "$bytes" 2>/dev/null || echo "$bytes bytes")
  what="$size in $versions object versions, $markers delete markers"
else
  what="size unknown: listing it failed, check your AWS credentials"
fi

cat <<EOT
gpulab: kept on purpose: the artifacts bucket s3://$bucket ($what).
        Your models, metrics and plots are there; copy them with:
          aws s3 sync s3://$bucket/runs ./runs
        It is versioned, so 'aws s3 rb --force' cannot delete it. To delete it and every version for good:
          bash scripts/delete-bucket.sh $bucket
EOT
