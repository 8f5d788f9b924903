#!/usr/bin/env bash
# Creates on moto what deploy/aws/parley-shared.yaml creates on AWS, with
# the names the sandbox uses: the two topics, the inbound and outbound
# queues with their DLQs and redrive, the gateway's dead-letter queue, the
# subscriptions (the streaming one with the same filter policy as the
# CloudFormation template: deploy/validate.sh checks they match), and the
# media bucket. The session table is made by `parley-session
# create-tables` (the compose service session-tables), the code path the
# CloudFormation table is checked against. Idempotent.
#
# Needs the AWS CLI and AWS_ENDPOINT_URL pointing at moto.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The CLI reads AWS_DEFAULT_REGION; the Rust SDK reads AWS_REGION.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
# The endpoint is passed explicitly too: not every CLI release applies
# AWS_ENDPOINT_URL to every service.
aws() { command aws --output text ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} "$@"; }

inbound_topic=$(aws sns create-topic --name parley-eum-in --query TopicArn)
streaming_topic=$(aws sns create-topic --name parley-connect-out --query TopicArn)

queue() { # name [redrive-target-arn]
  local url
  if [ -n "${2:-}" ]; then
    url=$(aws sqs create-queue --queue-name "$1" --query QueueUrl --attributes \
      "{\"VisibilityTimeout\":\"60\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$2\\\",\\\"maxReceiveCount\\\":\\\"8\\\"}\"}")
  else
    url=$(aws sqs create-queue --queue-name "$1" --query QueueUrl)
  fi
  echo "$url"
}
arn() { aws sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn --query Attributes.QueueArn; }

inbound_dlq=$(queue parley-inbound-dlq)
outbound_dlq=$(queue parley-outbound-dlq)
queue parley-dead-letters >/dev/null
inbound=$(queue parley-inbound "$(arn "$inbound_dlq")")
outbound=$(queue parley-outbound "$(arn "$outbound_dlq")")

subscribed() { # topic queue-arn
  aws sns list-subscriptions-by-topic --topic-arn "$1" \
    --query "Subscriptions[?Endpoint=='$2'].SubscriptionArn" | grep -q .
}
inbound_arn=$(arn "$inbound")
outbound_arn=$(arn "$outbound")
if ! subscribed "$inbound_topic" "$inbound_arn"; then
  # SNS envelopes, as deployed (the gateway reads the EUM event from Message).
  aws sns subscribe --topic-arn "$inbound_topic" --protocol sqs \
    --notification-endpoint "$inbound_arn" >/dev/null
fi
if ! subscribed "$streaming_topic" "$outbound_arn"; then
  policy=$(tr -d '\n' < "$here/streaming-filter-policy.json")
  aws sns subscribe --topic-arn "$streaming_topic" --protocol sqs \
    --notification-endpoint "$outbound_arn" \
    --attributes "{\"RawMessageDelivery\":\"true\",\"FilterPolicyScope\":\"MessageAttributes\",\"FilterPolicy\":$(printf '%s' "$policy" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')}" >/dev/null
fi

aws s3api head-bucket --bucket parley-media >/dev/null 2>&1 \
  || aws s3api create-bucket --bucket parley-media >/dev/null

echo "topics:  $inbound_topic $streaming_topic"
echo "queues:  $inbound $outbound"
echo "bucket:  parley-media"
