-- wrk script: POST one job per request (same body as httpbench.POST_BODY).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"queue_name":"bench-http","payload":{"n":1},"priority":0}'
