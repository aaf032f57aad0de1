# Enqueue a job (an idempotency key makes a repeated submit return the same job)
curl -s -X POST "$SPOOLED_URL/api/v1/jobs" \
  -H "Authorization: Bearer $SPOOLED_API_KEY" -H "Content-Type: application/json" \
  -d '{"queue_name": "emails", "payload": {"to": "user@example.com"}, "idempotency_key": "welcome-usr_123", "max_retries": 5}'

# Claim it as a worker: the response holds the job, its payload and a lease_id
CLAIM=$(curl -s -X POST "$SPOOLED_URL/api/v1/jobs/claim" \
  -H "Authorization: Bearer $SPOOLED_API_KEY" -H "Content-Type: application/json" \
  -d '{"queue_name": "emails", "worker_id": "worker-1", "limit": 1}')
JOB_ID=$(echo "$CLAIM" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
LEASE_ID=$(echo "$CLAIM" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["lease_id"])')

# Complete it with a result
curl -s -X POST "$SPOOLED_URL/api/v1/jobs/$JOB_ID/complete" \
  -H "Authorization: Bearer $SPOOLED_API_KEY" -H "Content-Type: application/json" \
  -d "{\"worker_id\": \"worker-1\", \"lease_id\": \"$LEASE_ID\", \"result\": {\"sent\": true}}"
